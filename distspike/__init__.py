"""distspike: Deep Spiking Networks as an actor-based distributed simulation."""
__version__ = "0.1.0"
