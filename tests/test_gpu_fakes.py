"""The fake pynvml must stay true to the installed nvidia-ml-py: same names, signatures, error
codes and error classes. (There is no real amdsmi to compare with on CI machines.)"""

from __future__ import annotations

import inspect

import pytest

from tests.fake_pynvml import ERROR_CODES, make_fake_pynvml

pynvml = pytest.importorskip("pynvml")


def test_every_fake_function_exists_in_the_real_binding_with_the_same_parameters() -> None:
    fake = make_fake_pynvml()
    names = sorted(n for n in vars(fake) if n.startswith("nvml") and callable(getattr(fake, n)))
    assert len(names) >= 20
    for name in names:
        real = getattr(pynvml, name)
        real_params = list(inspect.signature(real).parameters)
        fake_params = list(inspect.signature(getattr(fake, name)).parameters)
        assert fake_params == real_params, name


def test_error_codes_and_class_names_match() -> None:
    fake = make_fake_pynvml()
    for code_name, code in ERROR_CODES.items():
        assert getattr(pynvml, f"NVML_ERROR_{code_name}") == code
    for name in (n for n in vars(fake) if n.startswith("NVMLError_")):
        real_cls = getattr(pynvml, name)
        fake_cls = getattr(fake, name)
        assert real_cls(0).value == fake_cls(0).value, name  # the class fixes its own code


def test_error_construction_maps_codes_to_subclasses_like_the_real_one() -> None:
    fake = make_fake_pynvml()
    for code in (3, 12, 13, 15):
        real_err = pynvml.NVMLError(code)
        fake_err = fake.NVMLError(code)
        assert type(fake_err).__name__ == type(real_err).__name__
        assert fake_err.value == real_err.value == code
        assert isinstance(fake_err, fake.NVMLError)


def test_constants_match() -> None:
    fake = make_fake_pynvml()
    for name in (
        "NVML_TEMPERATURE_GPU",
        "NVML_CLOCK_SM",
        "NVML_CLOCK_MEM",
        "nvmlMemory_v2",
        "nvmlTemperature_v1",
    ):
        assert getattr(fake, name) == getattr(pynvml, name), name


def test_real_calls_before_init_raise_uninitialized_like_the_fake() -> None:
    fake = make_fake_pynvml()
    with pytest.raises(fake.NVMLError_Uninitialized):
        fake.nvmlDeviceGetCount()
    with pytest.raises(pynvml.NVMLError) as real:
        pynvml.nvmlDeviceGetCount()
    # without a driver the real binding says Uninitialized too (the library is not loaded)
    assert real.value.value in (1, 12)
