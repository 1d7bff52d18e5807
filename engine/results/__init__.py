"""Reading a finished run: loaded runs, inference, exports, the HTML report, Grad-CAM."""
