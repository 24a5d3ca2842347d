"""Reader studies: how readers perform with and without a modality (e.g. the AI), beyond single-model metrics.

Nothing is imported here, so `import pneumonia.studies` stays instant; the analysis modules load scipy on use.
"""
