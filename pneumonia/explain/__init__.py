"""Why the model said what it said: LIME and Grad-CAM maps (`maps`), the chest region (`chest_region`), and the
plain-sentence readout that combines them (`readout`)."""
