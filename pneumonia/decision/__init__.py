"""Turning scores into decisions: metrics at a threshold (`metrics`), costs and natural frequencies (`costs`), and
a site's own threshold (`site`)."""
