"""Vision on the CPU (SPEC §9): faces, segmentation, OCR, documents, moderation.

One module per feature; `models.load` keeps each model once per worker, loaded on first use,
so a delivery that asks for no vision feature never pays for one.
"""
