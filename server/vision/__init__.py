"""Vision on the CPU (SPEC §9): faces, OCR, documents, background removal, moderation."""
