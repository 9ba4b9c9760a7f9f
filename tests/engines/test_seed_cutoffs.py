"""The ``seed`` protocol's cutoffs follow the pseudopotentials (issue #12).

The shipped GTH family is norm-conserving and needs 80 Ry (README, Protocols: 40 Ry is
115 meV/atom off); the seed papers' 500/5000 eV (36.75/367.5 Ry) belong to their ultrasoft
files. Two UPF headers written here by hand, in the formats QE documents (UPF v2
``pseudo_type`` attribute, UPF v1 ``<PP_HEADER>`` second line), stand for a user's folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from perovflow.engines.pseudos import Pseudo

RY_EV = 13.605693122994
UPF2_US = '<UPF version="2.0.1">\n<PP_HEADER element="Cs" pseudo_type="US" z_valence="9.0"/>\n'
UPF1_PAW = "<PP_INFO>\n</PP_INFO>\n<PP_HEADER>\n   0  Version\n  PAW   Projector augmented\n"
UPF2_NC = '<UPF version="2.0.1">\n<PP_HEADER element="Br" pseudo_type="NC" z_valence="7"/>\n'


def _pseudos(tmp_path: Path, texts: dict[str, str]) -> dict[str, Pseudo]:
    out = {}
    for el, text in texts.items():
        path = tmp_path / f"{el}.upf"
        path.write_text(text)
        out[el] = Pseudo(el, path.name, path, "0", "user", {"Cs": 9, "Br": 7}[el])
    return out


def _cutoffs_ry(pseudos: dict[str, Pseudo], overrides: dict | None = None) -> tuple:
    from perovflow.engines.qe.inputs import qe_input_set
    from perovflow.structures.io import to_atoms
    from perovflow.structures.prototypes import build_prototype

    atoms = to_atoms(build_prototype("CsBr"))
    system = qe_input_set(atoms, "static", "seed", pseudos, overrides=overrides)["input_data"][
        "system"
    ]
    return round(system["ecutwfc"], 2), round(system["ecutrho"], 2)


def test_pseudo_kind_reads_both_upf_header_formats(tmp_path):
    from perovflow.engines.qe.inputs import pseudo_kind

    pseudos = _pseudos(tmp_path, {"Cs": UPF2_US, "Br": UPF2_NC})
    assert pseudo_kind(str(pseudos["Cs"].path)) == "us"
    assert pseudo_kind(str(pseudos["Br"].path)) == "nc"
    (tmp_path / "paw.upf").write_text(UPF1_PAW)
    assert pseudo_kind(str(tmp_path / "paw.upf")) == "paw"


def test_seed_uses_gth_cutoff_and_the_seed_values_for_ultrasoft(tmp_path):
    from perovflow.engines.pseudos import get_pseudos

    gth = get_pseudos(["Cs", "Br"], "qe")
    assert _cutoffs_ry(gth) == (80.0, 320.0)
    soft = _pseudos(tmp_path, {"Cs": UPF2_US, "Br": UPF2_NC})
    assert _cutoffs_ry(soft) == (pytest.approx(500 / RY_EV, abs=0.01),
                                 pytest.approx(5000 / RY_EV, abs=0.01))  # fmt: skip
    # the user's cutoff still wins over both
    assert _cutoffs_ry(soft, {"ecutwfc": 45, "ecutrho": 360}) == (45, 360)
