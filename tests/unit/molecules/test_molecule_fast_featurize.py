"""The fast featurizing path gives the features of the straightforward one: salts parsed one
fragment at a time and the shortcut past RDKit's largest-fragment chooser against parsing the
whole SMILES and choosing with RDKit, fingerprints read from RDKit's binary form against its
dicts, and a streamed chunk (one ``BlockLogs`` for the chunk) against preparing each molecule
alone; odd inputs (salts, charges, ties, invalid or empty SMILES) included."""

import numpy as np
import pytest
from rdkit import Chem, rdBase
from rdkit.Chem import rdFingerprintGenerator
from rdkit.Chem.MolStandardize import rdMolStandardize

from medassist.data.catalog import get_dataset
from medassist.data.io.molecules import MoleculeStandardizer, parse_smiles, prepare_molecule
from medassist.featurizers.molecules import (
    MoleculeFeaturizer,
    _counts_from_binary,
    fast_descriptor_vector,
    featurize_chunk,
    graph_arrays,
)

SALTS = ["CCN.Cl", "Cl.CCN", "[Na+].CC(=O)[O-]", "CC(=O)[O-].[Na+]", "CCO.OCC", "C.N", "N.C", "[Cl-].[Na+]", "O.O.CCCC",
         "CCCC.CCCO", "CCCO.CCCC", "[NH4+].[Cl-]", "CC.CC.CC", "OC(=O)C(O)=O.CCN(CC)CC", "[2H]C([2H])([2H])Cl.CC",
         "C[N+](C)(C)C.[O-]S(=O)(=O)C", "[H]Cl.CCN", "c1ccccc1[O-].[K+].O", "C[C@H](N)C(=O)O.Cl", "Cl.C[C@@H](O)[C@H](N)C(=O)O",
         "F/C=C/F.Cl", "[H+].[Cl-].CC", "CN(=O)=O.[K+]", "C[N+](=O)[O-].Cl", "c1cc[n+](C)cc1.[I-]", "CC(C)(C)[Si](C)(C)Cl.N",
         "[Fe+2].[O-]C(=O)C.[O-]C(=O)C", "N[C@@H](C)C(=O)[O-].[NH3+]CC", "C[S+](C)C.[Br-]", "c1ccccc1.c1ccccc1", "C1CC1.C2CC2",
         "C%11CC%11.O", "CC(=O)O.CC(=O)O", "OC(=O)c1ccccc1.[Mg]", "CC(C)=CCN1CCC2(C)c3cc(O)ccc3CC1C2C.Cl",
         "[Na+].[Na+].O=C([O-])CC([O-])=O", "C1CC[C@@H]2CCCC[C@H]2C1.Cl", "O=C(O)[C@H]1CCCN1.O=C(O)[C@@H]1CCCN1", "CCO.OCC.Cl",
         "CC(=O)O.OC(C)=O", "CCCO.CCCN", "FC(F)F.ClC(Cl)Cl", "CCOC.CCCO", "CCOC.COCC", "C[C@H](N)O.C[C@@H](N)O", "OC(=O)C[NH3+].[O-]C(=O)CN", "[O-]C(=O)C.CC(=O)[O-].[Ca+2]"]
#: Parsed whole (a ring bond across the '.', empty pieces) or refused, with the reason of the whole SMILES.
WHOLE = ["C1.C1", "C1CC.C1", "CC..CC", ".CC", "CC.", "C1CC1.C1", "CC.xyz", "CC.C(C)(C)(C)(C)C"]
ODD = ["", "   ", "C1CC(", "xyz", "c1cccc1", "C(C)(C)(C)(C)C", "CCO name", "CCO\textra", "C" * 220, "[O-][n+]1ccccc1", "[NH3+]CC([O-])=O",
       "c1ccccc1N(=O)=O", "[Na]", "Cl", "[H][H]"]


def _reference(text: str):
    """The straightforward standardisation: parse the whole SMILES, RDKit's largest-fragment
    chooser on every multi-fragment molecule, RDKit's uncharger on every charged one."""
    mol, reason = parse_smiles(text)
    if mol is None:
        return None, reason
    with rdBase.BlockLogs():
        if len(Chem.GetMolFrags(mol)) > 1:
            mol = rdMolStandardize.LargestFragmentChooser(preferOrganic=True).choose(mol)
        if any(a.GetFormalCharge() for a in mol.GetAtoms()):
            mol = rdMolStandardize.Uncharger(canonicalOrder=True).uncharge(mol)
    n = mol.GetNumHeavyAtoms()
    if n == 0:
        return None, "empty: no heavy atoms after standardisation"
    if n > 200:
        return None, f"too large: {n} heavy atoms (at most 200)"
    return mol, None


def _same_molecule(a, b) -> None:
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    assert Chem.MolToSmiles(a) == Chem.MolToSmiles(b)
    ga, gb = graph_arrays([a]), graph_arrays([b])
    for field in ("atom_codes", "atom_mass", "edge_index", "bond_codes"):
        assert np.array_equal(getattr(ga, field), getattr(gb, field)), field
    assert gen.GetCountFingerprint(a).GetNonzeroElements() == gen.GetCountFingerprint(b).GetNonzeroElements()
    np.testing.assert_array_equal(fast_descriptor_vector(a), fast_descriptor_vector(b))
    assert [int(x.GetChiralTag()) for x in a.GetAtoms()] == [int(x.GetChiralTag()) for x in b.GetAtoms()]
    assert [int(x.GetStereo()) for x in a.GetBonds()] == [int(x.GetStereo()) for x in b.GetBonds()]


@pytest.mark.parametrize("text", SALTS + WHOLE + ODD)
def test_prepared_molecule_equals_the_straightforward_standardisation(text):
    mol, smiles, reason = prepare_molecule(text, kind="smiles", standardizer=MoleculeStandardizer())
    ref, ref_reason = _reference(text)
    assert reason == ref_reason
    if ref is None:
        assert mol is None and smiles is None
        return
    _same_molecule(mol, ref)
    assert smiles == Chem.MolToSmiles(ref)


def test_salts_parsed_apart_take_rdkits_fragment_and_ties_go_to_rdkit():
    std = MoleculeStandardizer()
    assert std.largest_fragment_of_smiles("CCN") is None  # one fragment: parsed whole
    for text in WHOLE[:5]:
        assert std.largest_fragment_of_smiles(text) is None
    # equal size and weight, different structures: RDKit compares SMILES written within the whole molecule
    for tie in ("O=C(O)[C@H]1CCCN1.O=C(O)[C@@H]1CCCN1", "CCOC.CCCO", "C[C@H](N)O.C[C@@H](N)O"):
        assert std.largest_fragment_of_smiles(tie) is None, tie
    # copies of one structure: the last copy, as RDKit picks it; equal size, different weight: the heavier
    for text, last in (("CCO.OCC", "OCC"), ("c1ccccc1.c1ccccc1", "c1ccccc1"), ("C1CC1.C2CC2", "C2CC2"), ("CC(=O)O.OC(C)=O", "OC(C)=O")):
        got = std.largest_fragment_of_smiles(text)
        assert got is not None and Chem.MolToSmiles(got, canonical=False) == Chem.MolToSmiles(Chem.MolFromSmiles(last), canonical=False)
    for text in ("FC(F)F.ClC(Cl)Cl", "ClC(Cl)Cl.FC(F)F"):
        assert Chem.MolToSmiles(std.largest_fragment_of_smiles(text)) == "ClC(Cl)Cl"
    assert MoleculeStandardizer(largest_fragment=False).largest_fragment_of_smiles("CCN.Cl") is None
    assert Chem.MolToSmiles(std.largest_fragment_of_smiles("[Na+].CC(=O)[O-]")) == "CC(=O)[O-]"  # carbon first, then size
    assert Chem.MolToSmiles(std.largest_fragment_of_smiles("CCCCCCCC.C")) == "CCCCCCCC"


def test_chooser_shortcut_equals_rdkits_chooser_on_real_salts():
    """Every multi-fragment molecule of the bundled sets, standardised from the parsed whole
    molecule (as an SDF record is): the shortcut past RDKit's chooser changes nothing."""
    smiles = []
    for name, col in (("chembl_drugs", "smiles"), ("b3db_classification", "SMILES"), ("solubility", "smiles")):
        smiles += get_dataset(name).load()[col].dropna().astype(str).tolist()
    std = MoleculeStandardizer()
    chooser = rdMolStandardize.LargestFragmentChooser(preferOrganic=True)
    n = 0
    for text in dict.fromkeys(s for s in smiles + SALTS if "." in s):
        mol, _ = parse_smiles(text)
        if mol is None or len(frags := Chem.GetMolFrags(mol)) < 2:
            continue
        with rdBase.BlockLogs():
            _same_molecule(std._largest_fragment(mol, frags), chooser.choose(mol))
            piece = std.largest_fragment_of_smiles(text)
            if piece is not None:
                _same_molecule(piece, chooser.choose(mol))
        n += 1
    assert n > 300


def test_binary_fingerprints_read_back_as_rdkits_dicts():
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    mols = [Chem.MolFromSmiles(s) for s in ("C", "CCO", "c1ccccc1C(=O)O", "CC(C)(C)c1ccc(O)cc1C(=O)NCCCl", "[Na+]")]
    packed = _counts_from_binary([gen.GetCountFingerprint(m).ToBinary() for m in mols])
    assert packed is not None
    for k, m in enumerate(mols):
        nz = gen.GetCountFingerprint(m).GetNonzeroElements()
        sl = slice(packed.ptr[k], packed.ptr[k + 1])
        assert packed.indices[sl].tolist() == list(nz)
        np.testing.assert_array_equal(packed.counts[sl], np.log1p(np.asarray(list(nz.values()), dtype=np.float32)))
    assert packed.indices.dtype == np.int32 and packed.counts.dtype == np.float32 and packed.ptr.dtype == np.int64
    empty = _counts_from_binary([])
    assert empty is not None and len(empty) == 0
    assert _counts_from_binary([b"not a fingerprint"]) is None


@pytest.mark.parametrize("structure, descriptors", [("morgan", None), ("morgan", "fast"), ("graph", "fast")])
def test_featurize_chunk_equals_preparing_each_molecule_alone(structure, descriptors):
    texts = SALTS + WHOLE + ODD + get_dataset("b3db_classification").load()["SMILES"].dropna().astype(str).tolist()[:60]
    train = [m for m in (Chem.MolFromSmiles(s) for s in texts[-60:]) if m is not None]
    fz = MoleculeFeaturizer(structure=structure, descriptors=descriptors).fit(train)
    assert fz.single_pass == (structure == "morgan" and descriptors is None)
    rows = list(range(1, len(texts) + 1))
    status = rdBase.LogStatus()
    res = featurize_chunk(rows, texts, "smiles", featurizer=fz, canonical=True)
    assert rdBase.LogStatus() == status  # the chunk's BlockLogs, and the invalid SMILES' message capture, leave the logs as found
    std = fz.make_standardizer()
    alone = [prepare_molecule(t, kind="smiles", standardizer=std) for t in texts]
    assert res["ok"] == [i for i, (m, _, _) in enumerate(alone) if m is not None]
    assert res["smiles"] == [s for m, s, _ in alone if m is not None]
    assert res["skipped"] == [(rows[i], texts[i], r) for i, (m, _, r) in enumerate(alone) if m is None]
    assert any("invalid SMILES: " in r and "could not read" not in r for _, _, r in res["skipped"])  # RDKit's words, captured
    expected = fz.transform([m for m, _, _ in alone if m is not None])
    for field, value in vars(expected.structure).items():
        got = getattr(res["features"].structure, field)
        assert got.dtype == value.dtype and np.array_equal(got, value), field
    if descriptors:
        np.testing.assert_array_equal(res["features"].descriptors, expected.descriptors)
    np.testing.assert_array_equal(res["features"].n_imputed, expected.n_imputed)
    nothing = featurize_chunk([1, 2], ["", "xyz"], "smiles", featurizer=fz)
    assert nothing["ok"] == [] and nothing["features"] is None and len(nothing["skipped"]) == 2


def test_uncharger_is_skipped_only_where_it_would_change_nothing():
    """A charged molecule none of the uncharger's patterns matches (nitro groups, N-oxides,
    balanced zwitterions) comes back from RDKit's uncharger unchanged, so skipping it is exact."""
    smiles = get_dataset("chembl_drugs").load()["smiles"].dropna().astype(str).tolist()
    smiles += get_dataset("b3db_classification").load()["SMILES"].dropna().astype(str).tolist()
    smiles += ["C[N+](C)(C)C", "CC(=O)[O-]", "[NH3+]CC([O-])=O", "[O-][N+](=O)[O-]", "[O-]Cl(=O)(=O)=O", "c1nn[n-]n1", "C[NH3+]",
               "[O-][n+]1ccccc1", "C[N+](C)(C)CC(=O)[O-]", "O=[N+]([O-])c1ccccc1", "C[S+](C)C", "C[N-]S(=O)(=O)C", "OP(=O)([O-])[O-]"]
    sites = MoleculeStandardizer()._get_tools()["uncharge_sites"]
    uncharger = rdMolStandardize.Uncharger(canonicalOrder=True)
    skipped = changed = 0
    for text in dict.fromkeys(smiles):
        mol, _ = parse_smiles(text)
        if mol is None or not any(a.GetFormalCharge() for a in mol.GetAtoms()):
            continue
        with rdBase.BlockLogs():
            out = uncharger.uncharge(mol)
        if Chem.MolToSmiles(out) != Chem.MolToSmiles(mol):
            changed += 1
            assert any(mol.HasSubstructMatch(p) for p in sites), text
        elif not any(mol.HasSubstructMatch(p) for p in sites):
            skipped += 1
            assert Chem.MolToMolBlock(out) == Chem.MolToMolBlock(mol), text
    assert skipped > 100 and changed > 5
