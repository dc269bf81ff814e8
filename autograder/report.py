"""`course report OUT`: one page for the instructor about the whole class, OUT/report/index.html.

Read from what grading stored (OUT/work/results, OUT/course/gradebook.db, OUT/work/roster.json):
- the score distribution of every part (autograded parts from the judge's verdicts, written parts
  from the TA's scores, a TA's override winning as in nbgrader) and of each assignment's total;
- the class's most common mistakes per part: how many students got each diagnosis, from the
  verdict's "diagnoses" codes when the judge gave some, else the first sentence of the verdict's
  message (numbers replaced by "#" so "max abs difference 0.224" and "... 0.31" group), or the
  error the graded cell stopped with when it recorded nothing;
- submission statuses and the time each notebook took to grade;
- the roster check (who submitted without being enrolled, who is enrolled and submitted nothing), and
  the submission folders that were not graded because their names are not student ids (grades.csv).

The page is self-contained and works offline: the plots are PNGs (matplotlib's Agg backend) in
data: URIs, there is no script, and the Content-Security-Policy meta tag forbids anything else.
Every string a student controls (ids, judge messages quoting their errors) is escaped.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import re
import sys
import textwrap
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograder.course import Assignment, Course
from autograder.grading.store import INVALID_ID, STAGES, stored_results, write_atomic
from autograder.roster import RosterCheck, load_check

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
TOP_MISTAKES = 12  # bars per assignment's mistakes plot (the table below it lists them all)
LABEL_CHARS = 100  # a plot label is cut here (two lines); the table has the whole text
_STOPPED = re.compile(r"The cell stopped with ([A-Za-z_][\w.]*): ?(.*)", re.S)  # judge.explain_missing
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w])")


def report_path(out: Path) -> Path:
    return Path(out) / "report" / "index.html"


# ----------------------------------------------------------------------------- the class's data


def first_sentence(text: str) -> str:
    """A problem's first sentence with its numbers replaced by '#': the key that groups students."""
    text = " ".join(text.split()).lstrip("-• ").strip()
    end = re.search(r"[.!?](\s|$)", text)
    sentence = text[: end.start() + 1] if end else text
    return _NUMBER.sub("#", sentence)[:300]


def diagnoses(verdict: dict[str, Any]) -> list[str]:
    """One failed verdict's diagnoses: its codes if the judge gave some, else its message's first sentence.

    Only the first problem counts: the judge lists the same mistake once per probe input it showed.
    """
    codes = verdict.get("diagnoses")
    if isinstance(codes, list) and codes and all(isinstance(c, str) for c in codes):
        return sorted({c[:100] for c in codes})
    message = str(verdict.get("message", ""))
    stopped = _STOPPED.search(message)
    if stopped:  # no evidence because the graded cell raised: its error is the diagnosis
        name, text = stopped.group(1), first_sentence(stopped.group(2))
        if name == "NotImplementedError":
            return ["not answered: the cell stopped with NotImplementedError"]
        return [f"the cell stopped with {name}: {text}" if text else f"the cell stopped with {name}"]
    lines = [line for line in message.split("\n") if line.strip()]
    return [first_sentence(lines[0]) if lines else "(no message)"]


@dataclass
class PartStats:
    grade_id: str
    points: float
    manual: bool
    scores: list[float] = field(default_factory=list)  # one per student with a score
    ungraded: int = 0  # written parts still waiting for a TA
    mistakes: Counter = field(default_factory=Counter)  # diagnosis -> students


@dataclass
class AssignmentStats:
    assignment: Assignment
    parts: dict[str, PartStats]
    totals: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    students: list[tuple[str, str, str, float, float]] = field(default_factory=list)  # id, name, status, auto, total


@dataclass
class ClassData:
    assignments: list[AssignmentStats]
    seconds: dict[str, list[float]]  # "assignment/notebook" -> grading seconds per submission
    roster: RosterCheck | None
    names: dict[str, str]
    unreadable: int = 0  # stored results this report could not read
    invalid_ids: list[str] = field(default_factory=list)  # folder names (escaped by the grader) never graded


def _names(course: Course, course_root: Path) -> dict[str, str]:
    """Student id -> "First Last" from the gradebook (the roster's names), where known."""
    if not (course_root / "gradebook.db").is_file():
        return {}
    from nbgrader.api import Gradebook

    from autograder.grading.gradebook import db_url

    with Gradebook(db_url(course_root), course_id=course.id) as gb:
        return {
            s.id: " ".join(n for n in (s.first_name, s.last_name) if n)
            for s in gb.students
            if s.first_name or s.last_name
        }


def _add(
    st: AssignmentStats,
    result: dict[str, Any],
    grades: dict,
    names: dict[str, str],
    seconds: dict[str, list[float]],
) -> None:
    """Count one stored result (student x assignment) into ST and SECONDS."""
    a, student = st.assignment, result["student_id"]
    st.statuses[result["status"]] += 1
    submitted = result["status"] != "missing"
    if not submitted:  # counted in the statuses; scores and times are about work handed in
        st.students.append((student, names.get(student, ""), result["status"], 0.0, 0.0))
        return
    auto = float(result.get("auto_score", 0.0))
    stored = grades.get((student, a.id))
    entries, total = (stored.manual, stored.score) if stored else ({}, auto)
    st.totals.append(total)
    st.students.append((student, names.get(student, ""), result["status"], auto, total))
    for nb in result["notebooks"]:
        timings = nb.get("timings") or {}
        if nb.get("status") != "missing" and timings:
            seconds[f"{a.id}/{nb['name']}"].append(sum(float(timings.get(stage, 0.0)) for stage in STAGES))
        verdicts = {v["grade_id"]: v for v in nb.get("verdicts", []) if isinstance(v, dict) and "grade_id" in v}
        manual = entries.get(nb.get("name"), {})
        spec = next((n for n in a.notebooks if n.name == nb.get("name")), None)
        for part in spec.parts if spec else []:
            ps = st.parts[part.grade_id]
            ta = (manual.get(part.grade_id) or {}).get("score")
            v = verdicts.get(part.grade_id)
            if ta is not None:
                ps.scores.append(float(ta))
            elif part.manual:
                ps.ungraded += 1
            elif v is not None:
                ps.scores.append(float(v["score"]))
            if v is not None and nb.get("status") == "graded" and float(v["score"]) < float(v["max_score"]):
                ps.mistakes.update(diagnoses(v))


def collect(course: Course, out: Path) -> ClassData:
    from autograder.grading import gradebook

    out = Path(out)
    course_root = out / "course"
    grades = gradebook.class_grades(course_root, course)
    stats = {
        a.id: AssignmentStats(
            a, {p.grade_id: PartStats(p.grade_id, p.points, p.manual) for nb in a.notebooks for p in nb.parts}
        )
        for a in course.assignments
    }
    seconds: dict[str, list[float]] = defaultdict(list)
    names = _names(course, course_root)
    unreadable = 0
    for result in stored_results(out / "work"):
        st = stats.get(result["assignment"])
        if st is None:
            continue
        if not _readable(result):  # a result from another version of the grader: counted nowhere, but said
            unreadable += 1
            continue
        try:
            _add(st, result, grades, names, seconds)
        except (KeyError, TypeError, ValueError, AttributeError):  # a shape _readable did not foresee
            unreadable += 1
    return ClassData(
        assignments=[s for s in stats.values() if s.statuses],
        seconds=dict(seconds),
        roster=load_check(out),
        names=names,
        unreadable=unreadable,
        invalid_ids=_invalid_ids(out / "grades.csv"),
    )


def _number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _readable(result: dict[str, Any]) -> bool:
    """Whether RESULT has the shape _add reads (checked first, so a bad one is counted nowhere)."""
    notebooks = result["notebooks"]
    if not isinstance(result["student_id"], str) or not isinstance(notebooks, list):
        return False
    if not _number(result.get("auto_score", 0.0)):
        return False
    for nb in notebooks:
        if not isinstance(nb, dict) or not isinstance(nb.get("timings") or {}, dict):
            return False
        if not all(_number((nb.get("timings") or {}).get(stage, 0.0)) for stage in STAGES):
            return False
        verdicts = nb.get("verdicts", [])
        if not isinstance(verdicts, list):
            return False
        for v in verdicts:
            scored = isinstance(v, dict) and "grade_id" in v
            if scored and not (_number(v.get("score")) and _number(v.get("max_score"))):
                return False
    return True


def _invalid_ids(csv_path: Path) -> list[str]:
    """The folder names grades.csv lists as not student ids (each once)."""
    if not csv_path.is_file():
        return []
    with csv_path.open(newline="", encoding="utf-8", errors="replace") as fh:
        names = [row.get("student_id") or "" for row in csv.DictReader(fh) if row.get("status") == INVALID_ID]
    return sorted(set(names))


# ----------------------------------------------------------------------------- plots


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _label(text: str) -> str:
    """A plot label: at most two lines of LABEL_CHARS // 2, and no mathtext from a student's message."""
    lines = textwrap.wrap(text, LABEL_CHARS // 2, max_lines=2, placeholder=" …") or [""]
    return "\n".join(lines).replace("$", r"\$")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _whole_numbers(axis) -> None:
    """Ticks at whole numbers only: the axis counts students."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def scores_plot(st: AssignmentStats) -> str:
    """Per part, how many students got full, partial, zero points or await a TA; beside it the totals."""
    plt = _pyplot()
    parts = list(st.parts.values())
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.45 * len(parts) + 1.6), gridspec_kw={"width_ratios": [3, 2]})
    kinds = (("full", "#2e7d32"), ("partial", "#f9a825"), ("zero", "#c62828"), ("not graded yet", "#9e9e9e"))
    counts = {k: [] for k, _ in kinds}
    for ps in parts:
        counts["full"].append(sum(s >= ps.points for s in ps.scores))
        counts["partial"].append(sum(0 < s < ps.points for s in ps.scores))
        counts["zero"].append(sum(s <= 0 for s in ps.scores))
        counts["not graded yet"].append(ps.ungraded)
    y = range(len(parts))
    start = [0] * len(parts)
    for kind, colour in kinds:
        left.barh(y, counts[kind], left=start, color=colour, label=kind)
        start = [a + b for a, b in zip(start, counts[kind], strict=True)]
    left.set_yticks(list(y), [f"{ps.grade_id} ({ps.points:g})" for ps in parts])
    left.invert_yaxis()
    left.set_xlabel("students")
    _whole_numbers(left.xaxis)
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5 / (0.45 * len(parts) + 1.6) - 0.12), ncol=4, fontsize=8)
    left.set_title("points per part")
    maximum = st.assignment.max_score
    # one bar per whole point up to 40 points, centred on it; 20 bins beyond
    edges = [i - 0.5 for i in range(int(maximum) + 2)] if maximum <= 40 else 20
    right.hist(st.totals, bins=edges, color="#1565c0", rwidth=0.85)
    right.set_xlim(-0.5, maximum + 0.5)
    right.set_xlabel(f"total (of {maximum:g})")
    right.set_ylabel("students")
    _whole_numbers(right.yaxis)
    right.set_title("totals")
    fig.tight_layout()
    return _png(fig)


def mistakes_plot(st: AssignmentStats) -> str | None:
    plt = _pyplot()
    rows = sorted(
        ((n, gid, d) for gid, ps in st.parts.items() for d, n in ps.mistakes.items()),
        key=lambda r: (-r[0], r[1], r[2]),
    )[:TOP_MISTAKES]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(11, 0.55 * len(rows) + 1.2))
    ax.barh(range(len(rows)), [r[0] for r in rows], color="#c62828")
    ax.set_yticks(range(len(rows)), [_label(f"{gid}: {d}") for _, gid, d in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("students")
    _whole_numbers(ax.xaxis)
    ax.set_title("most common mistakes")
    fig.tight_layout()
    return _png(fig)


def statuses_plot(data: ClassData) -> str:
    plt = _pyplot()
    statuses = sorted({s for st in data.assignments for s in st.statuses}, key=lambda s: (s != "graded", s))
    names = [st.assignment.id for st in data.assignments]
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(names) + 1.4))
    start = [0] * len(names)
    colours = plt.get_cmap("tab10")
    for i, status in enumerate(statuses):
        values = [st.statuses.get(status, 0) for st in data.assignments]
        colour = "#2e7d32" if status == "graded" else colours(i % 10)
        ax.barh(range(len(names)), values, left=start, label=_label(status), color=colour)
        start = [a + b for a, b in zip(start, values, strict=True)]
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("submissions")
    _whole_numbers(ax.xaxis)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("submission status")
    fig.tight_layout()
    return _png(fig)


def times_plot(data: ClassData) -> str | None:
    if not data.seconds:
        return None
    plt = _pyplot()
    keys = sorted(data.seconds)
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(keys) + 1.4))
    ax.boxplot([data.seconds[k] for k in keys], orientation="horizontal", tick_labels=keys)
    ax.invert_yaxis()
    ax.set_xlabel("seconds to grade (prepare + execute + judge + feedback)")
    ax.set_title("time per notebook")
    fig.tight_layout()
    return _png(fig)


# ----------------------------------------------------------------------------- the page

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1150px;margin:1.5em auto;padding:0 1em;color:#212121}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f5f5f5}td.n{text-align:right}img{max-width:100%;height:auto;display:block;margin:.5em 0}
.warn{background:#fff8e1;border-left:4px solid #f9a825;padding:.5em 1em}details{margin:.6em 0}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(uri: str | None, alt: str) -> str:
    return f'<img src="{uri}" alt="{_e(alt)}">' if uri else ""


def _table(header: list[str], rows: list[list[Any]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{_e(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _roster_section(check: RosterCheck | None) -> str:
    if check is None:
        return "<p>No roster was given (<code>course grade --roster roster.csv</code>).</p>"
    if not check.unknown and not check.missing:
        return f"<p>Every submission is in the roster {_e(check.roster)}, and everyone in it submitted.</p>"
    out = []
    if check.unknown:
        out.append(f"<p>Submitted but not in the roster ({len(check.unknown)}): {_e(', '.join(check.unknown))}</p>")
    if check.missing:
        out.append(f"<p>In the roster, nothing submitted ({len(check.missing)}): {_e(', '.join(check.missing))}</p>")
    return f'<div class="warn">{"".join(out)}</div>'


def _assignment_section(st: AssignmentStats) -> str:
    a = st.assignment
    parts = []
    for ps in st.parts.values():
        mean = sum(ps.scores) / len(ps.scores) if ps.scores else None
        parts.append(
            [
                ps.grade_id,
                "written (TA)" if ps.manual else "auto",
                f"{ps.points:g}",
                sum(s >= ps.points for s in ps.scores),
                len(ps.scores),
                "" if mean is None else f"{mean:.2f}",
                ps.ungraded,
            ]
        )
    mistakes = sorted(
        ([gid, d, n] for gid, ps in st.parts.items() for d, n in ps.mistakes.items()),
        key=lambda r: (-r[2], r[0], r[1]),
    )
    html_parts = [
        f"<h2>{_e(a.id)}: {_e(a.title)}</h2>",
        f"<p>{sum(st.statuses.values())} submissions; "
        + ", ".join(f"{_e(s)}: {n}" for s, n in sorted(st.statuses.items()))
        + "</p>",
        _img(scores_plot(st), f"{a.id}: points per part and totals"),
        _table(
            ["part", "graded by", "points", "full marks", "scored", "mean", "waiting for a TA"],
            parts,
            numeric={2, 3, 4, 5, 6},
        ),
        "<h3>Most common mistakes (students per diagnosis)</h3>",
    ]
    plot = mistakes_plot(st)
    if plot:
        html_parts.append(_img(plot, f"{a.id}: most common mistakes"))
        html_parts.append(_table(["part", "diagnosis", "students"], mistakes, numeric={2}))
    else:
        html_parts.append("<p>No autograded part was failed by a notebook that ran to the end.</p>")
    students = [[s, name, status, f"{auto:g}", f"{total:g}"] for s, name, status, auto, total in st.students]
    html_parts.append(
        f"<details><summary>Students ({len(students)})</summary>"
        + _table(["student", "name", "status", f"auto (of {a.auto_max:g})", f"total (of {a.max_score:g})"], students)
        + "</details>"
    )
    return "\n".join(html_parts)


def render(course: Course, data: ClassData) -> str:
    submissions = sum(sum(st.statuses.values()) for st in data.assignments)
    students = {s[0] for st in data.assignments for s in st.students}
    body = [
        f"<h1>Class report: {_e(course.title)}</h1>",
        f"<p>{len(students)} students, {submissions} submissions, {len(data.assignments)} assignments.</p>",
        "<h2>Roster</h2>",
        _roster_section(data.roster),
        "<h2>Statuses and grading time</h2>",
        _img(statuses_plot(data), "submission status per assignment") if data.assignments else "",
        _img(times_plot(data), "grading time per notebook"),
        *(_assignment_section(st) for st in data.assignments),
    ]
    if not data.assignments:
        body.append("<p>Nothing has been graded yet.</p>")
    if data.invalid_ids:
        names = ", ".join(f"<code>{_e(n)}</code>" for n in data.invalid_ids)
        body.insert(
            2,
            f'<p class="warn">Not graded, because the folder name is not a student id (ASCII letters, digits, '
            f"'_', '.', '-'; at most 64): {names}. Rename the folder and grade again.</p>",
        )
    if data.unreadable:
        body.insert(2, f'<p class="warn">{data.unreadable} stored results could not be read and are left out.</p>')
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>Class report: {_e(course.title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body></html>\n"
    )


def write_report(course: Course, out: Path) -> Path:
    """Write OUT/report/index.html (readable by the instructor's group) and return its path."""
    path = report_path(out)
    write_atomic(path, render(course, collect(course, out)).encode("utf-8"))
    path.chmod(0o644)
    path.parent.chmod(0o755)
    return path


def main(args) -> int:
    """`course report OUT`."""
    from autograder.course import load_course

    out = Path(args.out)
    if not (out / "work" / "results").is_dir():
        print(f"course report: {out} has no graded results (run `course grade ... --out {out}` first)", file=sys.stderr)
        return 2
    print(f"report: {write_report(load_course(args.course), out)}")
    return 0
