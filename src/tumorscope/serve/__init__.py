"""The web API and page (FastAPI): ``tumorscope serve``."""
