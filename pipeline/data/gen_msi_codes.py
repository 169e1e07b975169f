#!/usr/bin/env python3
"""Generate msi_codes.toml: Windows Installer error messages and msiexec exit codes.

Message texts come from Microsoft's Win32 documentation (MicrosoftDocs/win32, CC-BY-4.0):

  desktop-src/Msi/windows-installer-error-messages.md   error (1xxx) and internal (2xxx-3xxx) messages
  desktop-src/Msi/error-codes.md                         msiexec.exe / InstMsi.exe return values
  desktop-src/Debug/system-error-codes--1700-3999-.md    3011 only (ERROR_SUCCESS_RESTART_REQUIRED)

Classes, causes, fixes and noise flags come from msi_codes_notes.toml (hand-written) and are merged in,
so regenerating never loses them.

Usage:
  gen_msi_codes.py --docs-git-dir DIR   read the markdown from a git clone of MicrosoftDocs/win32 (HEAD)
  gen_msi_codes.py --docs-dir DIR       read the markdown from a checked-out work tree
  gen_msi_codes.py                      no docs: reuse the messages already in msi_codes.toml and re-merge
                                        the notes (for editing the annotations only)
  gen_msi_codes.py --check              only validate msi_codes.toml (and the notes) and exit

Every run validates what it wrote: each (kind, code) of the documented tables present exactly once,
every entry with a class, cause, fix and link, and the file parsing with tomllib.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "msi_codes.toml"
NOTES = HERE / "msi_codes_notes.toml"

SOURCE_REPO = "https://github.com/MicrosoftDocs/win32"
FILE_MESSAGES = "desktop-src/Msi/windows-installer-error-messages.md"
FILE_EXIT = "desktop-src/Msi/error-codes.md"
FILE_SYSERR = "desktop-src/Debug/system-error-codes--1700-3999-.md"

LINK_MESSAGES = "https://learn.microsoft.com/windows/win32/msi/windows-installer-error-messages"
LINK_EXIT = "https://learn.microsoft.com/windows/win32/msi/error-codes"
LINK_SYSERR = "https://learn.microsoft.com/windows/win32/debug/system-error-codes--1700-3999-"

KINDS = ("exit", "error", "internal")
CLASSES = (
    "execution_policy", "command_not_found", "access_denied", "file_in_use", "service_start",
    "source_missing", "install_in_progress", "newer_version", "patch_not_applicable", "user_cancel",
    "restart_required", "policy", "disk_space", "internal_error", "custom_action", "file_write",
    "launch_condition", "package_invalid", "generic_failure", "success", "info",
)
# Exit codes taken from the system error code list rather than error-codes.md.
SYSERR_EXIT = {3011: "ERROR_SUCCESS_RESTART_REQUIRED"}

# Entries that must have advice written for the code itself (checked by validate()).
SPECIFIC_REQUIRED = (
    [("exit", c) for c in (1601, 1602, 1603, 1605, 1608, 1612, 1618, 1619, 1620, 1624, 1625, 1633, 1634,
                           1635, 1636, 1638, 1639, 1641, 1642, 1643, 1644, 3010, 3011)]
    + [("error", c) for c in (1303, 1304, 1305, 1306, 1307, 1308, 1310, 1311, 1316, 1321, 1324, 1325, 1327,
                              1334, 1335, 1402, 1406, 1500, 1706, 1708, 1714, 1715, 1719, 1720, 1721, 1722,
                              1723, 1730, 1732, 1901, 1904, 1911, 1913, 1918, 1919, 1920, 1921, 1923, 1924,
                              1925, 1926, 1935, 1937, 1938)]
    + [("internal", c) for c in (2203, 2205, 2228, 2235, 2262, 2324, 2343, 2350, 2502, 2503, 2705, 2711, 2715,
                                 2721, 2727, 2732, 2738, 2739, 2753, 2755, 2762, 2769, 2826, 2835, 2869, 2908)]
)

FIELD_ORDER = (
    "code", "kind", "name", "message", "message_alt", "remarks", "class", "noise", "noise_note",
    "cause", "fix", "advice", "link",
)


# ----------------------------------------------------------------------------- markdown -> text

LINK_RE = re.compile(r"(?<!\\)\[((?:[^\[\]\\]|\\.)*?)(?<!\\)\]\([^)\s]*\)")


def md_to_text(cell: str) -> str:
    """Markdown table cell -> plain text: links become their text, bold markers and backslash
    escapes are dropped, <br/> becomes a line break; lines are trimmed and empty ones dropped."""
    s = LINK_RE.sub(r"\1", cell)
    s = s.replace("**", "")
    s = s.replace("<br/>", "\n")
    s = re.sub(r"\\(.)", r"\1", s)
    lines = [ln.strip() for ln in s.split("\n")]
    return "\n".join(ln for ln in lines if ln)


def table_rows(md: str) -> list[list[str]]:
    rows = []
    for line in md.splitlines():
        if not line.startswith("|") or set(line.replace("|", "").strip()) <= set("-: "):
            continue
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def parse_messages(md: str) -> list[dict]:
    entries: dict[int, dict] = {}
    for cells in table_rows(md):
        m = re.fullmatch(r"(\d{4})(?:<br/>)?", cells[0])
        if not m:
            continue
        code = int(m.group(1))
        message = md_to_text(cells[1])
        remarks = md_to_text(cells[2]) if len(cells) > 2 else ""
        if code in entries:
            # 1935 is listed twice: the first text is the original one, the second the text of
            # Windows Installer for Windows Server 2003 and later (what current systems print).
            prev = entries[code]
            prev["message_alt"] = prev["message"]
            prev["message"] = message
            if remarks and remarks != prev.get("remarks"):
                prev["remarks"] = remarks
            continue
        e = {"code": code, "kind": "error" if code < 2000 else "internal", "message": message}
        if remarks:
            e["remarks"] = remarks
        e["link"] = LINK_MESSAGES
        entries[code] = e
    return list(entries.values())


def parse_exit(md: str) -> list[dict]:
    out = []
    for cells in table_rows(md):
        if len(cells) < 3 or not re.fullmatch(r"\d+", cells[1]):
            continue
        out.append({
            "code": int(cells[1]), "kind": "exit", "name": md_to_text(cells[0]),
            "message": md_to_text(cells[2]), "link": LINK_EXIT,
        })
    return out


def parse_syserr(md: str, code: int, name: str) -> dict:
    esc = name.replace("_", r"\_")
    i = md.index(f"**{esc}**")
    tail = md[i:].splitlines()[1:]
    paras = [ln.strip() for ln in tail if ln.strip()]
    assert paras[0].startswith(f"{code} ("), paras[:2]
    return {"code": code, "kind": "exit", "name": name, "message": md_to_text(paras[1]), "link": LINK_SYSERR}


# ----------------------------------------------------------------------------- sources

class Docs:
    def __init__(self, git_dir: str | None, work_dir: str | None):
        self.git_dir, self.work_dir = git_dir, work_dir

    def read(self, path: str) -> str:
        if self.git_dir:
            return subprocess.run(["git", "--git-dir", self.git_dir, "show", f"HEAD:{path}"],
                                  check=True, capture_output=True, text=True, encoding="utf-8").stdout
        return (Path(self.work_dir) / path).read_text(encoding="utf-8")

    def git(self, *args: str) -> str:
        gd = self.git_dir or str(Path(self.work_dir) / ".git")
        return subprocess.run(["git", "--git-dir", gd, *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    def provenance(self) -> dict:
        prov = {"commit": self.git("rev-parse", "HEAD"), "commit_date": self.git("log", "-1", "--format=%cs", "HEAD")}
        for key, path in (("messages", FILE_MESSAGES), ("exit", FILE_EXIT), ("syserr", FILE_SYSERR)):
            prov[f"{key}_last_change"] = self.git("log", "-1", "--format=%h %cs", "HEAD", "--", path)
        return prov


def load_from_docs(docs: Docs) -> tuple[list[dict], dict]:
    entries = parse_messages(docs.read(FILE_MESSAGES)) + parse_exit(docs.read(FILE_EXIT))
    syserr = docs.read(FILE_SYSERR)
    for code, name in SYSERR_EXIT.items():
        entries.append(parse_syserr(syserr, code, name))
    return entries, docs.provenance()


PROV_RE = re.compile(r"^# @(\w+): (.*)$", re.M)


def load_from_existing() -> tuple[list[dict], dict]:
    text = OUT.read_text(encoding="utf-8")
    prov = dict(PROV_RE.findall(text))
    keep = ("code", "kind", "name", "message", "message_alt", "remarks", "link")
    entries = [{k: e[k] for k in keep if k in e} for e in tomllib.loads(text)["code"]]
    return entries, prov


# ----------------------------------------------------------------------------- notes

def expand_codes(items) -> list[int]:
    out = []
    for it in items:
        if isinstance(it, int):
            out.append(it)
        elif "-" not in it:
            out.append(int(it))
        else:
            a, b = (int(x) for x in it.split("-"))
            out.extend(range(a, b + 1))
    return out


def merge_notes(entries: list[dict], notes: dict) -> list[str]:
    """Apply classes, generic advice and per-code annotations. Returns problems found."""
    problems = []
    by_key = {(e["kind"], e["code"]): e for e in entries}

    # 1. classes: [classes.<kind>] default = "...", <class> = [codes or "a-b" ranges]
    class_of: dict[tuple[str, int], str] = {}
    explicit: dict[str, set[int]] = {}
    for kind, table in notes.get("classes", {}).items():
        for cls, codes in table.items():
            if cls == "default":
                continue
            explicit.setdefault(kind, set()).update(
                int(c) for c in codes if isinstance(c, int) or "-" not in c)
            if cls not in CLASSES:
                problems.append(f"classes.{kind}: unknown class {cls}")
            for code in expand_codes(codes):
                key = (kind, code)
                if key in class_of:
                    problems.append(f"classes.{kind}: {code} listed under {class_of[key]} and {cls}")
                class_of[key] = cls
    for e in entries:
        key = (e["kind"], e["code"])
        default = notes.get("classes", {}).get(e["kind"], {}).get("default")
        e["class"] = class_of.pop(key, None) or default
        if e["class"] is None:
            problems.append(f"{e['kind']} {e['code']}: no class")
    # Ranges may span undocumented gaps; a single code listed but not documented is a mistake.
    for kind, code in class_of:
        if code in explicit.get(kind, set()):
            problems.append(f"classes.{kind}: {code} is not a documented code")

    # 2. per-code notes: [<kind>.<code>] class/cause/fix/noise/noise_note
    for kind in KINDS:
        for code_s, note in notes.get(kind, {}).items():
            e = by_key.get((kind, int(code_s)))
            if e is None:
                problems.append(f"notes: {kind}.{code_s} is not a documented code")
                continue
            for field in ("class", "cause", "fix", "noise", "noise_note"):
                if field in note:
                    e[field] = note[field]
            unknown = set(note) - {"class", "cause", "fix", "noise", "noise_note"}
            if unknown:
                problems.append(f"notes: {kind}.{code_s}: unknown fields {sorted(unknown)}")
            if "cause" in note and "fix" in note:
                e["advice"] = "specific"

    # 3. generic advice per class for the rest
    generic = notes.get("generic", {})
    for e in entries:
        e.setdefault("noise", False)
        if e.get("advice") == "specific":
            continue
        g = generic.get(e["class"])
        if not g:
            problems.append(f"generic: no advice for class {e['class']}")
            continue
        e.setdefault("cause", g["cause"])
        e.setdefault("fix", g["fix"])
        e["advice"] = "class"
    return problems


# ----------------------------------------------------------------------------- output

def toml_str(s: str) -> str:
    # JSON string escapes (\" \\ \n \r \t \uXXXX) are valid TOML basic-string escapes.
    return json.dumps(s, ensure_ascii=False)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return toml_str(v)


def sort_key(e: dict):
    return (e["code"], KINDS.index(e["kind"]))


def render(entries: list[dict], prov: dict) -> str:
    head = f"""\
# Windows Installer error messages and msiexec exit codes, with causes and fixes.
#
# GENERATED by gen_msi_codes.py from Microsoft's documentation and msi_codes_notes.toml; edit those,
# not this file.
#
# Message texts, exit-code names and remarks: Microsoft Win32 documentation,
#   repository {SOURCE_REPO}
#   {FILE_MESSAGES}  ("Windows Installer Error Messages (for Developers)")
#   {FILE_EXIT}  ("MsiExec.exe and InstMsi.exe error messages (for developers)")
#   {FILE_SYSERR}  (3011 only)
#   Copyright (c) Microsoft Corporation, licensed under Creative Commons Attribution 4.0 International
#   (CC-BY-4.0, https://creativecommons.org/licenses/by/4.0/). Changes: markdown converted to plain text
#   (links reduced to their text, bold markers and backslash escapes removed, <br/> as line breaks).
#   For 1935, listed twice in the source, `message` is the later text and `message_alt` the original.
# class, noise, noise_note, cause, fix: patchwatch annotations (msi_codes_notes.toml). advice = "specific"
# when written for that code, "class" when it is the generic advice for the entry's class.
#
# kind: exit = value returned by msiexec.exe / the MSI API; error = Error-table message 1000-1999
# (shown as "Error NNNN." / "Info NNNN." / "Note: 1: NNNN" in logs); internal = message 2000 and up
# (no authored text; "DEBUG: Error NNNN" / "Note: 1: NNNN"). The same number can be both an exit code
# and an error message (1601-1611, 1651): look entries up by (kind, code).
#
"""
    for k in ("commit", "commit_date", "messages_last_change", "exit_last_change", "syserr_last_change"):
        head += f"# @{k}: {prov.get(k, '')}\n"
    parts = [head]
    for e in sorted(entries, key=sort_key):
        lines = ["", "[[code]]"]
        for f in FIELD_ORDER:
            if f in e:
                lines.append(f"{f} = {toml_value(e[f])}")
        parts.append("\n".join(lines) + "\n")
    return "".join(parts)


# ----------------------------------------------------------------------------- validation

EXPECTED_ERROR_RANGE = (1101, 1999)
EXPECTED_INTERNAL_RANGE = (2000, 3999)


def validate(text: str, notes: dict, doc_codes: dict[str, set[int]] | None = None) -> list[str]:
    problems = []
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        return [f"msi_codes.toml does not parse: {err}"]
    entries = data.get("code", [])
    seen: dict[tuple[str, int], int] = {}
    for e in entries:
        key = (e.get("kind"), e.get("code"))
        seen[key] = seen.get(key, 0) + 1
        where = f"{key[0]} {key[1]}"
        if e.get("kind") not in KINDS:
            problems.append(f"{where}: bad kind")
        if e.get("class") not in CLASSES:
            problems.append(f"{where}: bad or missing class {e.get('class')!r}")
        for f in ("message", "cause", "fix", "link", "advice"):
            if f not in e:
                problems.append(f"{where}: missing {f}")
        for f in ("cause", "fix"):
            v = e.get(f, "")
            if not v.strip() and f in e:
                problems.append(f"{where}: empty {f}")
            if e.get("message") and v.strip().rstrip(".") == e["message"].strip().rstrip("."):
                problems.append(f"{where}: {f} repeats the message")
        if not isinstance(e.get("noise"), bool):
            problems.append(f"{where}: noise must be a boolean")
        if e.get("kind") == "exit" and not e.get("name"):
            problems.append(f"{where}: exit code without name")
        if e.get("kind") == "error" and not (EXPECTED_ERROR_RANGE[0] <= e["code"] <= EXPECTED_ERROR_RANGE[1]):
            problems.append(f"{where}: error code out of range")
        if e.get("kind") == "internal" and not (EXPECTED_INTERNAL_RANGE[0] <= e["code"] <= EXPECTED_INTERNAL_RANGE[1]):
            problems.append(f"{where}: internal code out of range")
    for key, n in seen.items():
        if n != 1:
            problems.append(f"{key[0]} {key[1]}: present {n} times")
    if doc_codes is not None:
        for kind, codes in doc_codes.items():
            have = {c for (k, c) in seen if k == kind}
            if missing := sorted(codes - have):
                problems.append(f"{kind}: documented but missing: {missing}")
            if extra := sorted(have - codes):
                problems.append(f"{kind}: not in the documentation: {extra}")
    # Codes the brief of this table requires, whatever the source says.
    must = {("exit", c) for c in (0, 1259, 1602, 1603, 1618, 1619, 1620, 1638, 1639, 1641, 1642, 3010, 3011)}
    must |= {("exit", c) for c in range(1601, 1651) if c not in (1617,)}
    must |= {("error", c) for c in (1101, 1303, 1500, 1722, 1920, 1935, 1939)}
    must |= {("internal", c) for c in (2101, 2203, 2205, 3002)}
    if missing := sorted(must - set(seen)):
        problems.append(f"required codes missing: {missing}")
    # Codes admins meet most often must carry advice written for them, not the class's generic one.
    by_key = {(e.get("kind"), e.get("code")): e for e in entries}
    for key in SPECIFIC_REQUIRED:
        e = by_key.get(key)
        if e is not None and e.get("advice") != "specific":
            problems.append(f"{key[0]} {key[1]}: needs specific cause and fix in the notes")
    # Every annotated code must be documented.
    for kind in KINDS:
        for code_s in notes.get(kind, {}):
            if (kind, int(code_s)) not in seen:
                problems.append(f"notes: {kind}.{code_s} not in table")
    return problems


def summary(text: str) -> str:
    data = tomllib.loads(text)["code"]
    from collections import Counter
    by_kind = Counter(e["kind"] for e in data)
    by_class = Counter(e["class"] for e in data)
    by_advice = Counter(e["advice"] for e in data)
    noise = sorted(f"{e['kind']}:{e['code']}" for e in data if e["noise"])
    return (f"{len(data)} entries; kinds {dict(sorted(by_kind.items()))}\n"
            f"classes {dict(sorted(by_class.items()))}\n"
            f"advice {dict(sorted(by_advice.items()))}\nnoise {noise}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--docs-git-dir", help="git directory of a MicrosoftDocs/win32 clone (reads HEAD)")
    src.add_argument("--docs-dir", help="work tree of a MicrosoftDocs/win32 checkout")
    ap.add_argument("--check", action="store_true", help="only validate msi_codes.toml")
    args = ap.parse_args()

    notes = tomllib.loads(NOTES.read_text(encoding="utf-8"))
    if args.check:
        text = OUT.read_text(encoding="utf-8")
        problems = validate(text, notes)
    else:
        if args.docs_git_dir or args.docs_dir:
            entries, prov = load_from_docs(Docs(args.docs_git_dir, args.docs_dir))
        else:
            entries, prov = load_from_existing()
        doc_codes: dict[str, set[int]] = {k: set() for k in KINDS}
        for e in entries:
            doc_codes[e["kind"]].add(e["code"])
        problems = merge_notes(entries, notes)
        text = render(entries, prov)
        problems += validate(text, notes, doc_codes)
        if not problems:
            OUT.write_text(text, encoding="utf-8", newline="\n")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print(summary(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
