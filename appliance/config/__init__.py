"""Files the instrument reads: its config (typed, validated), TOML with line numbers, scenarios."""

from appliance.config.schema import (
    AudioConfig,
    ClockConfig,
    Config,
    EngineConfig,
    GpioConfig,
    MidiConfig,
    default_path,
    load,
    param_values,
)

__all__ = ["AudioConfig", "ClockConfig", "Config", "EngineConfig", "GpioConfig", "MidiConfig", "default_path",
           "load", "param_values"]
