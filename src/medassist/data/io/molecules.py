"""Reading molecules (SMILES, ``.smi``, CSV/TSV with a SMILES column, SDF) through RDKit, and
standardising them: largest fragment, neutralised, canonical SMILES, optionally the canonical
tautomer; duplicates found by canonical SMILES.

A molecule that cannot be used is never dropped quietly: it is returned as a :class:`Skipped`
record with its 1-based row (data row of a CSV, line of a ``.smi`` file, record of an SDF) and
the reason RDKit gives, and callers report how many were skipped and why.

Example:
    >>> mols = read_molecule_table(frame, smiles_column="smiles", source="my.csv")
    >>> len(mols.smiles), [s.reason for s in mols.skipped][:1]
    (640, ['invalid SMILES: unclosed ring'])
"""

from __future__ import annotations

import contextlib
import gzip
import io
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medassist.exceptions import DataError, DataFileNotFoundError, EmptyDataError, SchemaError

#: File suffixes read as SMILES lists, SD files and delimited tables.
SMI_SUFFIXES = (".smi", ".smiles", ".ism", ".can", ".txt")
SDF_SUFFIXES = (".sdf", ".sd", ".mol", ".sdf.gz", ".sd.gz")
TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".csv.gz", ".tsv.gz")
#: Column names taken as the SMILES column when none is given (case-insensitive).
SMILES_NAMES = ("smiles", "canonical_smiles", "smi", "isomeric_smiles", "canonical smiles", "smiles_string", "structure")
#: A molecule with more heavy atoms than this is refused (peptides, polymers): graph features and
#: fingerprints of such entries mean little and they cost much.
MAX_HEAVY_ATOMS = 200


@dataclass(frozen=True)
class Skipped:
    """A molecule that was not used: 1-based ``row``, the ``text`` given, and why."""

    row: int
    text: str
    reason: str

    @property
    def category(self) -> str:
        """The reason without its details (for counts): 'invalid SMILES', 'valence error', ..."""
        return self.reason.split(":", 1)[0]


def summarize_skipped(skipped: list[Skipped], *, examples: int = 3) -> list[str]:
    """One line per reason: count and the first rows, e.g. ``"3 × invalid SMILES (rows 4, 9, 12)"``."""
    by: dict[str, list[int]] = {}
    for s in skipped:
        by.setdefault(s.category, []).append(s.row)
    lines = []
    for cat, rows in sorted(by.items(), key=lambda kv: -len(kv[1])):
        shown = ", ".join(map(str, rows[:examples])) + (" ..." if len(rows) > examples else "")
        lines.append(f"{len(rows)} × {cat} (row{'s' if len(rows) > 1 else ''} {shown})")
    return lines


# --------------------------------------------------------------------------- parsing


_RDKIT: tuple[Any, Any] | None = None


def _rdkit() -> tuple[Any, Any]:
    """RDKit's ``Chem`` and ``rdBase``, imported on first use (an import statement per molecule
    costs more than a screen can spare)."""
    global _RDKIT
    if _RDKIT is None:
        from rdkit import Chem, rdBase

        _RDKIT = (Chem, rdBase)
    return _RDKIT


_PROBLEM_NAMES = {
    "AtomValenceException": "valence error",
    "AtomKekulizeException": "kekulization error",
    "KekulizeException": "kekulization error",
    "AtomSanitizeException": "sanitization error",
}


def _syntax_message(text: str) -> str:
    """RDKit's own words for a SMILES it cannot read (captured from its log)."""
    Chem, rdBase = _rdkit()
    before = rdBase.LogStatus()
    buf = io.StringIO()
    rdBase.LogToPythonStderr()  # (enables every RDKit log)
    try:
        with contextlib.redirect_stderr(buf):
            Chem.MolFromSmiles(text, sanitize=False)
    finally:
        # the logs that were off stay off (a caller's BlockLogs, RDKit's defaults)
        for line in before.splitlines():
            name, _, state = line.partition(":")
            if state.strip() == "disabled":
                rdBase.DisableLog(name.strip())
    msg = buf.getvalue().strip().splitlines()
    detail = msg[0] if msg else ""
    detail = re.sub(r"^\[[0-9:]+\]\s*", "", detail)
    detail = re.sub(r"^SMILES Parse Error:\s*", "", detail)
    detail = re.sub(r"\s*for input: .*$", "", detail)
    return detail or "RDKit could not read it"


def parse_smiles(text: Any, *, block_logs: bool = True) -> tuple[Any, str | None]:
    """Parse one SMILES. Returns ``(mol, None)`` or ``(None, reason)``; never raises.

    ``block_logs=False``: the caller keeps RDKit's logs off around many calls (a ``BlockLogs``
    per molecule costs about 5% of a screen).
    """
    Chem, rdBase = _rdkit()
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return None, "empty: no SMILES in this row"
    s = str(text).strip()
    if not s:
        return None, "empty: no SMILES in this row"
    s = s.split()[0] if (" " in s or "\t" in s) else s
    if block_logs:
        with rdBase.BlockLogs():
            mol = Chem.MolFromSmiles(s)  # the common case: one parse, sanitised
    else:
        mol = Chem.MolFromSmiles(s)
    if mol is not None and mol.GetNumAtoms():
        return mol, None
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(s, sanitize=False)  # find out why
    if mol is None:
        return None, f"invalid SMILES: {_syntax_message(s)}"
    return _sanitize(mol)


def _sanitize(mol: Any) -> tuple[Any, str | None]:
    Chem, rdBase = _rdkit()
    with rdBase.BlockLogs():
        if mol.GetNumAtoms() == 0:
            return None, "empty: the molecule has no atoms"
        problems = Chem.DetectChemistryProblems(mol)
        if problems:
            p = problems[0]
            return None, f"{_PROBLEM_NAMES.get(p.GetType(), 'sanitization error')}: {p.Message()}"
        try:
            Chem.SanitizeMol(mol)
        except Exception as e:  # RDKit raises several unrelated types; the message is what matters
            return None, f"sanitization error: {e}"
    return mol, None


def parse_molblock(block: str) -> tuple[Any, str | None]:
    """Parse one SDF record's connection table (no properties)."""
    Chem, rdBase = _rdkit()
    with rdBase.BlockLogs():
        mol = Chem.MolFromMolBlock(block, sanitize=False, removeHs=False)
        if mol is None:
            return None, "invalid molfile: RDKit could not read this SDF record"
        mol, reason = _sanitize(mol)
        if mol is None:
            return None, reason
        try:
            mol = Chem.RemoveHs(mol)
        except Exception as e:  # noqa: BLE001 (reported, not hidden)
            return None, f"sanitization error: {e}"
        return mol, None


# --------------------------------------------------------------------------- standardising


#: The four patterns RDKit's ``Uncharger`` matches (MolStandardize/Charge.cpp): protonated and
#: quaternary cations not balanced by a neighbour, unbalanced anions, acid anions. Where none
#: matches, the uncharger changes nothing and returns a copy (most charged molecules of a library:
#: nitro groups, N-oxides, zwitterions written with both charges), so it is not called.
_UNCHARGER_PATTERNS = (
    "[+,+2,+3,+4;!h0;!$(*~[-]),$(*(~[-])~[-])]",
    "[+,+2,+3,+4;h0;!$(*~[-])]",
    "[-!$(*~[+,+2,+3,+4])]",
    "[$([O,S;-][C,S;+0]=[O,S]),$([O,S;-][N,P;+](=[O,S])[O,S;-]),$([O-][Cl,Br,I;+,+2,+3][O-]),$([n-]1nnnc1),$([n-]1ncnn1)]",
)


def _chooser_weight(mol: Any) -> float:
    """The weight RDKit's largest-fragment chooser compares fragments of equal size by, summed
    in the same order (MolStandardize/Fragment.cpp: "it's not important to be perfect here")."""
    weight = 0.0
    for a in mol.GetAtoms():
        weight += 100 * a.GetAtomicNum() + a.GetIsotope() - a.GetFormalCharge() * 0.1
        weight += a.GetTotalNumHs()
    return weight


class MoleculeStandardizer:
    """Largest fragment → neutralise → (optional) canonical tautomer; canonical SMILES out.

    Args:
        largest_fragment: keep the largest organic fragment (drops salts and solvents).
        neutralize: neutralise charges where a neutral form exists (RDKit's Uncharger).
        canonical_tautomer: replace the molecule by RDKit's canonical tautomer (slow; off by
            default).
        max_heavy_atoms: larger molecules are refused with a reason.

    Example:
        >>> MoleculeStandardizer().standardize_smiles("[Na+].CC(=O)[O-]")
        ('CC(=O)O', None)
    """

    def __init__(self, *, largest_fragment: bool = True, neutralize: bool = True, canonical_tautomer: bool = False,
                 max_heavy_atoms: int = MAX_HEAVY_ATOMS) -> None:
        self.largest_fragment = largest_fragment
        self.neutralize = neutralize
        self.canonical_tautomer = canonical_tautomer
        self.max_heavy_atoms = max_heavy_atoms
        self._tools: dict[str, Any] | None = None

    def _get_tools(self) -> dict[str, Any]:
        if self._tools is None:
            from rdkit.Chem.MolStandardize import rdMolStandardize

            Chem, _ = _rdkit()
            self._tools = {
                "fragment": rdMolStandardize.LargestFragmentChooser(preferOrganic=True),
                "uncharge": rdMolStandardize.Uncharger(canonicalOrder=True),
                "tautomer": rdMolStandardize.TautomerEnumerator() if self.canonical_tautomer else None,
                "charged": Chem.MolFromSmarts("[!+0]"),  # any atom with a formal charge
                "carbon": Chem.MolFromSmarts("[#6]"),
                "uncharge_sites": [Chem.MolFromSmarts(p) for p in _UNCHARGER_PATTERNS],
            }
        return self._tools

    def largest_fragment_of_smiles(self, text: str, *, block_logs: bool = True) -> Any | None:
        """The fragment RDKit's chooser keeps from a multi-fragment SMILES (a salt, a hydrate),
        parsed on its own: the molecule ``standardize`` gets from choosing it out of the whole
        one (the same atoms, bonds and stereo in the same order: sanitising and stereo
        perception look within a fragment), without parsing the counter-ions into it, copying
        it and sanitising it again.

        Equally large candidates go by RDKit's next key, a weight summed atom by atom in the
        same order; copies of one structure (a hemisalt) give the last copy, as RDKit's last key
        (the smallest SMILES, later ones winning ties) does.

        None when the text must be parsed whole: no '.', a piece RDKit cannot read alone (a ring
        bond across the '.', an error to report for the whole SMILES), or equally large and heavy
        candidates that differ (RDKit compares SMILES written within the whole molecule). Only
        for ``largest_fragment=True``.
        """
        if not self.largest_fragment or not isinstance(text, str) or "." not in text:
            return None
        s = text.strip()
        s = s.split()[0] if (" " in s or "\t" in s) else s
        Chem, rdBase = _rdkit()
        tools = self._get_tools()
        mols, keys = [], []
        with rdBase.BlockLogs() if block_logs else contextlib.nullcontext():
            for piece in s.split("."):
                mol = Chem.MolFromSmiles(piece) if piece else None
                if mol is None or not mol.GetNumAtoms():
                    return None
                mols.append(mol)
                # RDKit's first two keys: contains carbon, atoms counting hydrogens
                keys.append((mol.HasSubstructMatch(tools["carbon"]), mol.GetNumAtoms(onlyExplicit=False)))
        best = max(keys)
        tied = [k for k, key in enumerate(keys) if key == best]
        if len(tied) == 1:
            return mols[tied[0]]
        weights = [_chooser_weight(mols[k]) for k in tied]
        heaviest = [k for k, w in zip(tied, weights) if w == max(weights)]
        if len(heaviest) == 1:
            return mols[heaviest[0]]
        if len({Chem.MolToSmiles(mols[k]) for k in heaviest}) == 1:
            return mols[heaviest[-1]]
        return None

    def _largest_fragment(self, mol: Any, frags: tuple[tuple[int, ...], ...]) -> Any:
        """RDKit's ``LargestFragmentChooser(preferOrganic=True).choose(mol)``, without its cost
        where the answer is plain.

        RDKit keeps the fragment that is largest by (contains carbon, atoms counting hydrogens,
        a mass-like weight, smallest SMILES); it writes a SMILES of every fragment on the way,
        most of its cost. When one fragment alone has the largest (carbon, atoms) pair, that is
        its choice whatever the later keys say, and the same edit (the other fragments' atoms
        removed in one batch, then sanitised) gives the same molecule. Ties go to RDKit.
        """
        Chem, _ = _rdkit()
        atom = mol.GetAtomWithIdx
        # Atoms with hydrogens, one fragment at a time, but for the fragment with most heavy atoms
        # (usually the molecule beside a small counter-ion): the whole molecule's count less the
        # others'. Carbon is looked for until found.
        big = max(range(len(frags)), key=lambda k: len(frags[k]))
        keys: list[tuple[bool, int]] = []
        rest = 0
        for k, frag in enumerate(frags):
            if k == big:
                keys.append((any(atom(i).GetAtomicNum() == 6 for i in frag), 0))
                continue
            organic, n = False, 0
            for i in frag:
                a = atom(i)
                n += 1 + a.GetTotalNumHs()
                organic = organic or a.GetAtomicNum() == 6
            keys.append((organic, n))
            rest += n
        keys[big] = (keys[big][0], mol.GetNumAtoms(onlyExplicit=False) - rest)
        best = max(keys)
        if keys.count(best) > 1:
            return self._get_tools()["fragment"].choose(mol)
        keep = keys.index(best)
        out = Chem.RWMol(mol)
        out.BeginBatchEdit()
        for k, frag in enumerate(frags):
            if k != keep:
                for i in frag:
                    out.RemoveAtom(i)
        out.CommitBatchEdit()
        Chem.SanitizeMol(out)
        return out.GetMol()

    def standardize(self, mol: Any, *, smiles: str | None = None) -> tuple[Any, str | None]:
        """Standardise a parsed molecule. Returns ``(mol, None)`` or ``(None, reason)``.

        ``smiles``, the text the molecule was read from, lets obvious cases skip work: without
        '.' there is one fragment, without '+' or '-' no charge.
        """
        Chem, rdBase = _rdkit()
        tools = self._get_tools()
        try:
            # The fast paths skip work a molecule does not need (a single fragment, no charge), and
            # RDKit's logs are blocked only around the tools that write them: screening millions
            # of molecules spends most of its time here otherwise.
            if self.largest_fragment and (smiles is None or "." in smiles):
                frags = Chem.GetMolFrags(mol)
                if len(frags) > 1:
                    with rdBase.BlockLogs():
                        mol = self._largest_fragment(mol, frags)
            if self.neutralize and (smiles is None or "+" in smiles or "-" in smiles) and mol.HasSubstructMatch(tools["charged"]) \
                    and any(mol.HasSubstructMatch(p) for p in tools["uncharge_sites"]):
                with rdBase.BlockLogs():
                    mol = tools["uncharge"].uncharge(mol)
            if tools["tautomer"] is not None:
                with rdBase.BlockLogs():
                    mol = tools["tautomer"].Canonicalize(mol)
        except Exception as e:  # noqa: BLE001 (reported per molecule, never hidden)
            return None, f"standardisation failed: {e}"
        n = mol.GetNumHeavyAtoms()
        if n == 0:
            return None, "empty: no heavy atoms after standardisation"
        if n > self.max_heavy_atoms:
            return None, f"too large: {n} heavy atoms (at most {self.max_heavy_atoms})"
        return mol, None

    def standardize_smiles(self, text: Any) -> tuple[str | None, str | None]:
        """SMILES in, canonical standardised SMILES out (or ``(None, reason)``)."""
        mol, reason = parse_smiles(text)
        if mol is None:
            return None, reason
        mol, reason = self.standardize(mol)
        if mol is None:
            return None, reason
        from rdkit import Chem

        return Chem.MolToSmiles(mol), None

    def to_dict(self) -> dict[str, Any]:
        return {"largest_fragment": self.largest_fragment, "neutralize": self.neutralize,
                "canonical_tautomer": self.canonical_tautomer, "max_heavy_atoms": self.max_heavy_atoms}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MoleculeStandardizer:
        return cls(**d)


def prepare_molecule(text: str, *, kind: str, standardizer: MoleculeStandardizer, canonical: bool = True,
                     block_logs: bool = True) -> tuple[Any, str | None, str | None]:
    """Parse (``kind`` 'smiles' or 'molblock'), standardise and canonicalise one molecule
    (``block_logs=False``: the caller has blocked RDKit's logs, see ``parse_smiles``).

    Returns:
        ``(mol, canonical_smiles, None)`` or ``(None, None, reason)``; with ``canonical=False``
        the SMILES is not computed (None) and only the molecule is returned.
    """
    mol = standardizer.largest_fragment_of_smiles(text, block_logs=block_logs) if kind == "smiles" else None
    if mol is None:
        mol, reason = parse_smiles(text, block_logs=block_logs) if kind == "smiles" else parse_molblock(text)
        if mol is None:
            return None, None, reason
    mol, reason = standardizer.standardize(mol, smiles=str(text) if kind == "smiles" else None)
    if mol is None:
        return None, None, reason
    if not canonical:
        return mol, None, None
    return mol, _rdkit()[0].MolToSmiles(mol), None


# --------------------------------------------------------------------------- tables in memory


@dataclass
class MoleculeSet:
    """Molecules of a table that could be used, in input order, and those that could not.

    Attributes:
        frame: the usable input rows (original columns, values unchanged), index reset.
        smiles: canonical standardised SMILES, one per row of ``frame``.
        mols: RDKit molecules, one per row of ``frame``.
        rows: 1-based input row of each kept molecule.
        skipped: molecules that were not used, with row and reason.
    """

    frame: pd.DataFrame
    smiles: list[str]
    mols: list[Any]
    rows: np.ndarray
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.smiles)


def find_smiles_column(frame: pd.DataFrame, given: str | None, *, source: str) -> str:
    """The SMILES column: the one given, else one named like 'smiles' (case-insensitive)."""
    if given:
        if given not in frame.columns:
            have = ", ".join(map(str, frame.columns[:30]))
            raise SchemaError(f"{source}: SMILES column '{given}' not found. The table has: {have}.")
        return given
    lowered = {str(c).strip().lower(): c for c in frame.columns}
    for name in SMILES_NAMES:
        if name in lowered:
            return lowered[name]
    have = ", ".join(map(str, frame.columns[:30]))
    raise SchemaError(f"{source}: which column holds the SMILES? None is named 'smiles'; pass --smiles-column COLUMN. The table has: {have}.")


def read_molecule_table(
    frame: pd.DataFrame, *, smiles_column: str | None = None, standardizer: MoleculeStandardizer | None = None,
    source: str = "input", molblocks: list[str] | None = None,
) -> MoleculeSet:
    """Parse and standardise every row of ``frame``; unusable rows are returned as ``skipped``.

    Args:
        frame: the table (its values are never changed).
        smiles_column: the column with SMILES (found by name when None).
        molblocks: SDF connection tables, one per row, used instead of a SMILES column.
    """
    std = standardizer or MoleculeStandardizer()
    if molblocks is None:
        col = find_smiles_column(frame, smiles_column, source=source)
        texts, kind = frame[col].tolist(), "smiles"
    else:
        texts, kind = molblocks, "molblock"
    keep, smiles, mols, skipped = [], [], [], []
    for i, text in enumerate(texts):
        mol, smi, reason = prepare_molecule(text, kind=kind, standardizer=std)
        if mol is None or smi is None:  # canonical SMILES are computed: smi is None exactly when mol is
            shown = "" if text is None or (isinstance(text, float) and np.isnan(text)) else str(text)
            skipped.append(Skipped(row=i + 1, text=shown if kind == "smiles" else f"record {i + 1}", reason=reason or "unknown"))
            continue
        keep.append(i)
        smiles.append(smi)
        mols.append(mol)
    return MoleculeSet(frame=frame.iloc[keep].reset_index(drop=True), smiles=smiles, mols=mols,
                       rows=np.asarray(keep, dtype=np.int64) + 1, skipped=skipped)


def _check_file(path: Path, expected: str) -> None:
    if not path.exists():
        raise DataFileNotFoundError(f"{path}: file not found (expected {expected}).")
    if path.is_dir():
        raise DataError(f"{path}: is a directory (expected {expected}).")
    if path.stat().st_size == 0:
        raise EmptyDataError(f"{path}: the file is empty (expected {expected}).")


def file_kind(path: str | Path) -> str:
    """'smi', 'sdf' or 'table' from the file name."""
    name = Path(path).name.lower()
    if name.endswith(SDF_SUFFIXES):
        return "sdf"
    if name.endswith(SMI_SUFFIXES):
        return "smi"
    if name.endswith(TABLE_SUFFIXES):
        return "table"
    raise DataError(f"{path}: unknown molecule file type; expected .smi, .sdf or .csv/.tsv.")


def read_molecule_file(path: str | Path, *, smiles_column: str | None = None) -> tuple[pd.DataFrame, str | None, list[str] | None]:
    """Read a whole molecule file into a table.

    Returns:
        ``(frame, smiles_column, molblocks)``: for a SMILES list or a table, the column holding
        SMILES; for an SDF, one connection table per row (``smiles_column`` is None) and the
        record's name and SD properties as columns.
    """
    path = Path(path)
    kind = file_kind(path)
    if kind == "table":
        from medassist.data.io.tables import read_table

        frame = read_table(path)
        return frame, find_smiles_column(frame, smiles_column, source=str(path)), None
    rows, blocks = [], []
    for batch in iter_raw_batches(path, batch_size=10_000, smiles_column=smiles_column):
        rows.extend(batch.columns)
        blocks.extend(batch.texts)
    if not blocks:
        raise EmptyDataError(f"{path}: no molecules found.")
    frame = pd.DataFrame(rows)
    if kind == "smi":
        frame.insert(0, "smiles", blocks)
        return frame, "smiles", None
    return frame, None, blocks


# --------------------------------------------------------------------------- streaming


@dataclass
class RawBatch:
    """Unparsed molecules of a file: 1-based ``rows``, the ``texts`` (SMILES or molfile blocks),
    ``kind`` ('smiles' | 'molblock') and each record's other ``columns`` (values as read)."""

    rows: list[int]
    texts: list[str]
    kind: str
    columns: list[dict[str, Any]]


def _open_text(path: Path):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="replace")
    return path.open("r", encoding="utf-8-sig", errors="replace")


def _looks_like_header(first: str) -> bool:
    tok = first.split()[0] if first.split() else ""
    return tok.lower() in SMILES_NAMES or tok.lower() in {"smiles", "id", "name"}


def _iter_smi(path: Path, batch_size: int) -> Iterator[RawBatch]:
    keys = ["name"]  # the columns after the SMILES (a header line names them)
    rows: list[int] = []
    texts: list[str] = []
    cols: list[dict[str, Any]] = []
    with _open_text(path) as fh:
        row = 0
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            first = line.lstrip()[:1]
            if not first or first == "#":
                continue
            parts = line.split(None, 1) if "\t" not in line else line.split("\t")
            if lineno == 1 and _looks_like_header(line):
                keys = [p.strip() for p in parts[1:]] or ["name"]
                continue
            row += 1
            rows.append(row)
            texts.append(parts[0].strip())
            if len(parts) == 1:
                cols.append({})
            elif len(parts) == 2:  # the common case: SMILES and a name
                cols.append({keys[0]: parts[1].strip()})
            else:
                cols.append({keys[k] if k < len(keys) else f"column_{k + 2}": p.strip() for k, p in enumerate(parts[1:])})
            if len(rows) >= batch_size:
                yield RawBatch(rows, texts, "smiles", cols)
                rows, texts, cols = [], [], []
    if rows:
        yield RawBatch(rows, texts, "smiles", cols)


_PROP = re.compile(r"^>.*<([^>]+)>")


def _split_record(record: str) -> tuple[str, dict[str, Any]]:
    """An SDF record's molfile block and its name + SD properties."""
    lines = record.split("\n")
    end = next((i for i, ln in enumerate(lines) if ln.startswith("M  END")), None)
    block = "\n".join(lines[: end + 1]) if end is not None else record
    props: dict[str, Any] = {"name": lines[0].strip()} if lines and lines[0].strip() else {}
    i = (end + 1) if end is not None else len(lines)
    while i < len(lines):
        m = _PROP.match(lines[i])
        if m:
            vals = []
            i += 1
            while i < len(lines) and lines[i].strip() != "":
                vals.append(lines[i])
                i += 1
            props[m.group(1)] = "\n".join(vals)
        i += 1
    return block, props


def _iter_sdf(path: Path, batch_size: int) -> Iterator[RawBatch]:
    rows, texts, cols = [], [], []
    buf: list[str] = []
    row = 0
    with _open_text(path) as fh:
        for line in fh:
            if line.startswith("$$$$"):
                row += 1
                block, props = _split_record("".join(buf).replace("\r\n", "\n"))
                rows.append(row)
                texts.append(block)
                cols.append(props)
                buf = []
                if len(rows) >= batch_size:
                    yield RawBatch(rows, texts, "molblock", cols)
                    rows, texts, cols = [], [], []
            else:
                buf.append(line)
    if "".join(buf).strip():  # a last record without its $$$$ terminator
        row += 1
        block, props = _split_record("".join(buf).replace("\r\n", "\n"))
        rows.append(row)
        texts.append(block)
        cols.append(props)
    if rows:
        yield RawBatch(rows, texts, "molblock", cols)


def _iter_table(path: Path, batch_size: int, smiles_column: str | None) -> Iterator[RawBatch]:
    name = path.name.lower()
    sep = "\t" if name.endswith((".tsv", ".tab", ".tsv.gz")) else ","
    if sep == ",":
        import csv

        with _open_text(path) as fh:
            sample = fh.read(64_000)
        try:
            sep = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
        except csv.Error:
            sep = ","
    try:
        # Every value is read as text, so a library's IDs ("007", "1e5") come back unchanged.
        reader = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, chunksize=batch_size,
                             encoding="utf-8-sig", skipinitialspace=True)
        row = 0
        col = None
        for chunk in reader:
            chunk.columns = [str(c).strip() for c in chunk.columns]
            if col is None:
                col = find_smiles_column(chunk, smiles_column, source=str(path))
            texts = chunk[col].tolist()
            others = chunk.drop(columns=[col])
            n = len(chunk)
            yield RawBatch(list(range(row + 1, row + n + 1)), texts, "smiles",
                           others.to_dict("records") if len(others.columns) else [{} for _ in range(n)])
            row += n
    except pd.errors.EmptyDataError as e:
        raise EmptyDataError(f"{path}: no columns found (expected a table with a header row).") from e
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: not a well-formed table: {str(e).strip()}") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}).") from e


def iter_raw_batches(path: str | Path, *, batch_size: int = 2048, smiles_column: str | None = None) -> Iterator[RawBatch]:
    """Stream a molecule file in batches without parsing the molecules (bounded memory).

    ``.smi``: one SMILES per line, optionally followed by a name (a first line naming the
    columns is read as a header; ``#`` lines are comments). SDF: one record per ``$$$$``; the
    title line becomes ``name`` and SD properties become columns. CSV/TSV: the SMILES column
    (given, or named like 'smiles'); every other column is carried as text, unchanged.
    """
    path = Path(path)
    _check_file(path, "a .smi, .sdf or .csv file of molecules")
    kind = file_kind(path)
    if kind == "smi":
        yield from _iter_smi(path, batch_size)
    elif kind == "sdf":
        yield from _iter_sdf(path, batch_size)
    else:
        yield from _iter_table(path, batch_size, smiles_column)


def duplicate_rows(smiles: list[str]) -> dict[int, int]:
    """Positions whose canonical SMILES already occurred: ``{position: first position}``."""
    first: dict[str, int] = {}
    dup: dict[int, int] = {}
    for i, s in enumerate(smiles):
        if s in first:
            dup[i] = first[s]
        else:
            first[s] = i
    return dup


def count_reasons(skipped: list[Skipped]) -> dict[str, int]:
    return dict(Counter(s.category for s in skipped))
