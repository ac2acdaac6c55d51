"""CareHub's care portal: the FastAPI app that home-care staff and installers use."""
