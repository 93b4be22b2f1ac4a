"""The parts of ``engine.engine.Engine``."""
