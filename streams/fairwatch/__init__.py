"""fairwatch: streaming audit of deployed face-recognition systems for demographic bias."""

__version__ = "0.1.0"
