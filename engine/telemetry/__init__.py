"""GPU, system and emissions telemetry. Modules here import their hardware libraries lazily."""
