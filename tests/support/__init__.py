"""What tests and benchmarks share: the server harness, the simulated annotator (Dice, clicks, scribbles), a real
PACS (Orthanc) and 3D Slicer's own client. Benchmarks use it; it imports nothing from them."""
