"""The parameter registry: ranges, curves, parsing, refusals."""

from __future__ import annotations

import math
import threading

import pytest

from appliance.errors import ApplianceError, ParamError
from appliance.params import PARAMETERS, ParamStore


def test_the_registry_has_what_every_input_needs():
    for name in ("tempo", "click", "density", "volume", "brightness", "reverb", "swing", "seed",
                 "scale", "root", "hits", "steps", "rotation", "motion", "variation"):
        spec = PARAMETERS.spec(name)
        assert spec.minimum <= spec.default <= spec.maximum
    assert PARAMETERS.spec("tempo").unit == "BPM"


@pytest.mark.parametrize("name,value,text", [
    ("tempo", 400, "tempo must be within 20..300 BPM, got 400"),
    ("tempo", 19.9, "tempo must be within 20..300 BPM, got 19.9"),
    ("density", 1.5, "density must be within 0..1, got 1.5"),
    ("click", 2, "click must be within 0..1, got 2"),
    ("volume", 3, "volume must be within -60..0 dB, got 3"),
])
def test_out_of_range_values_are_refused_with_the_range(name, value, text):
    with pytest.raises(ParamError) as caught:
        PARAMETERS.spec(name).validate(value)
    assert str(caught.value) == text
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ApplianceError)


@pytest.mark.parametrize("bad", [math.nan, math.inf, "fast", None])
def test_non_numbers_are_refused(bad):
    with pytest.raises(ParamError, match=r"tempo must be a number within 20\.\.300 BPM"):
        PARAMETERS.spec("tempo").coerce(bad)


def test_unknown_names_suggest_the_likely_one():
    with pytest.raises(ParamError, match="unknown parameter 'tmepo'; did you mean 'tempo'"):
        PARAMETERS.spec("tmepo")


def test_parsing_as_typed():
    assert PARAMETERS.spec("tempo").parse("132.5") == 132.5
    assert PARAMETERS.spec("click").parse("on") == 1.0
    assert PARAMETERS.spec("click").parse("off") == 0.0
    assert PARAMETERS.spec("scale").parse("Dorian") == list(PARAMETERS.spec("scale").choices).index("dorian")
    assert PARAMETERS.spec("root").parse("F#") == 6
    with pytest.raises(ParamError, match="scale must be one of major, minor"):
        PARAMETERS.spec("scale").parse("blues")


def test_steps_quantise_values():
    assert PARAMETERS.spec("hits").validate(4.6) == 5
    assert PARAMETERS.spec("tempo").validate(120.04) == 120.0
    assert PARAMETERS.spec("swing").validate(66.7) == 66.5


@pytest.mark.parametrize("name", [spec.name for spec in PARAMETERS])
def test_every_parameter_maps_0_to_1_and_back(name):
    spec = PARAMETERS.spec(name)
    assert spec.from_unit(0.0) == spec.minimum
    assert spec.from_unit(1.0) == spec.maximum
    assert spec.from_unit(-3) == spec.minimum and spec.from_unit(7) == spec.maximum
    for unit in (0.1, 0.37, 0.5, 0.9):
        value = spec.from_unit(unit)
        assert spec.minimum <= value <= spec.maximum
        if spec.step == 0:
            assert spec.to_unit(value) == pytest.approx(unit)


def test_exp_curve_spends_the_knob_evenly_on_ratios():
    length = PARAMETERS.spec("length")
    assert length.curve == "exp"
    middle = length.from_unit(0.5)
    assert middle == pytest.approx(math.sqrt(length.minimum * length.maximum))


def test_store_refuses_and_keeps_the_old_value():
    store = ParamStore(PARAMETERS)
    store.set("tempo", 133)
    with pytest.raises(ParamError):
        store.set("tempo", 1000)
    assert store.get("tempo") == 133


def test_store_snapshots_are_consistent_across_threads():
    store = ParamStore(PARAMETERS)
    done = threading.Event()

    def writer():
        for i in range(2000):
            store.set("density", (i % 100) / 100)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not done.is_set():
        assert 0 <= store.snapshot()["density"] <= 1
    thread.join()
    assert store.get("density") == 0.99


def test_external_values_read_as_people_write_them():
    values = PARAMETERS.defaults()
    shown = PARAMETERS.external(values)
    assert shown["scale"] == "dorian" and shown["root"] == "A"
    assert shown["click"] == 0 and isinstance(shown["click"], int)
    assert shown["tempo"] == 100.0
