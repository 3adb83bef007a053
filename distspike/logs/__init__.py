"""Run logs: per-actor spike traffic (``traffic``) and its inspection tool (``cli``)."""
from distspike.logs.traffic import SCHEMA, TrafficError, TrafficRecorder, read_traffic

__all__ = ["SCHEMA", "TrafficError", "TrafficRecorder", "read_traffic"]
