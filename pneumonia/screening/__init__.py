"""Screening a film: the input gate (`gate`), the predictor that reads, checks and scores (`predictor`), and the
fair slot that shares one model between app sessions (`serving`)."""
