"""Ruddlesden–Popper stacking faults between CsPbBr3 and CsPbI3 grains (seed 003)."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Composition

from perovflow.errors import InputError
from perovflow.structures import faults


@pytest.fixture(scope="module")
def fault():
    return faults.rp_fault("CsPbBr3-cubic", "CsPbI3-cubic", 3, 3)


def test_composition_is_two_rp_blocks(fault):
    # Cs(n+1) Pb(n) X(3n+1) per grain: Cs4Pb3Br10 + Cs4Pb3I10
    assert fault.composition == Composition("Cs8Pb6Br10I10")
    charge = sum({"Cs": 1, "Pb": 2, "Br": -1, "I": -1}[s.specie.symbol] for s in fault)
    assert charge == 0
    domains = fault.site_properties["domain"]
    assert {d for d, s in zip(domains, fault, strict=True) if s.specie.symbol == "Br"} == {
        "CsPbBr3"
    }
    assert {d for d, s in zip(domains, fault, strict=True) if s.specie.symbol == "I"} == {"CsPbI3"}


def test_both_sides_of_each_fault_are_csx_with_half_shift(fault):
    planes = faults.fault_planes(fault)
    assert len(planes) == 2  # periodic cell: two faults
    c = fault.lattice.c
    z = fault.cart_coords[:, 2]
    for plane in planes:
        dz = (z - plane + c / 2) % c - c / 2
        below = [i for i in np.argsort(np.abs(dz)) if dz[i] < 0][:2]
        above = [i for i in np.argsort(np.abs(dz)) if dz[i] > 0][:2]
        for side in (below, above):
            layer = {fault[i].specie.symbol for i in side}
            assert "Cs" in layer and layer & {"Br", "I"} and "Pb" not in layer
        # rock-salt stacking: a Cs on one side sits over the halide of the other (½,½ shift)
        cs_below = next(i for i in below if fault[i].specie.symbol == "Cs")
        x_above = next(i for i in above if fault[i].specie.symbol != "Cs")
        assert np.allclose(
            fault[cs_below].frac_coords[:2] % 1, fault[x_above].frac_coords[:2] % 1, atol=1e-6
        )


def test_lateral_supercell_and_layers():
    big = faults.rp_fault(layers_a=2, layers_b=4, lateral="2x2")
    assert big.composition["Pb"] == 4 * 6
    assert big.composition["Br"] == 4 * 7 and big.composition["I"] == 4 * 13
    assert len(faults.fault_planes(big)) == 2


def test_vacancy_near_and_far(fault):
    near, near_info = faults.place_halide_vacancy(fault, "near")
    far, far_info = faults.place_halide_vacancy(fault, "far")
    assert near_info["element"] == far_info["element"] == "I"
    assert len(near) == len(far) == len(fault) - 1
    # near: the halide of the CsX layer next to the fault, half the CsX–CsX gap away
    layers_gap = sorted(faults.fault_planes(fault))
    assert near_info["distance_to_fault_A"] < 2.5
    # far: middle of a 3-layer grain, 1.5 cubic lattice constants plus half the gap away
    assert far_info["distance_to_fault_A"] > 3 * near_info["distance_to_fault_A"]
    assert far_info["distance_to_fault_A"] > 1.5 * 6.0
    assert far_info["fault_planes_z_A"] == pytest.approx(layers_gap, abs=1e-3)
    br, info = faults.place_halide_vacancy(fault, "far", element="Br")
    assert br.composition["Br"] == 9 and info["domain"] == "CsPbBr3"


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda f: faults.place_halide_vacancy(f, "middle"), "unknown vacancy position"),
        (lambda f: faults.place_halide_vacancy(f, "near", element="Cl"), "no Cl halide"),
        (lambda f: faults.rp_fault(lateral="2by2"), "bad lateral"),
        (lambda f: faults.rp_fault(a="Cs4PbBr6"), "not a cubic ABX3"),
        (lambda f: faults.rp_fault(layers_a=0), "layers per grain"),
    ],
)
def test_bad_fault_requests(fault, call, words):
    with pytest.raises(InputError, match=words):
        call(fault)
