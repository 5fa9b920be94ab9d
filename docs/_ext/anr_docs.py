"""Sphinx helpers for the astro-nn-restore documentation.

Directives
----------
``.. weights-example:: MODEL``
    A runnable example that needs the shipped model ``MODEL`` (e.g.
    ``denoise-default``). When its weights and card are in the weights folder,
    the content is executed: as a ``.. plot::`` (default) or, with the
    ``:doctest:`` flag, as doctest blocks (run by this extension at build time
    and by pytest). When they are not, the page shows a "weights not shipped
    yet" warning and the code, not executed, and the build passes.
``.. model-cards::``
    One section per JSON model card in the weights folder.
``.. model-limits:: MODEL``
    The training ranges recorded in one model card (keys ending in ``_range``,
    the training data and command), or a note that the model is not shipped.
``.. readme-command:: N``
    The Nth fenced ``bash`` block of ``README.md``, verbatim.
``.. benchmark-report:: NAME``
    ``benchmarks/results/NAME.md`` as reStructuredText, with its date and
    machine; a quick run (``--quick``, tiny inputs) is never shown as a result.

Build-time execution
--------------------
Every hand-written page (not the generated ``api/`` pages) is re-read on each
build and the plot directive's cache is cleared, so its examples always run;
the ``>>>`` blocks of each page are run with doctest (doctestplus' output
checker, ``FLOAT_CMP``). A failing example of either kind is a Sphinx warning,
so the build with ``-W`` fails.
"""

import doctest
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

TASKS = ("denoise", "deblur", "superres", "autoencoder", "colorize")
# a --quick run (tiny inputs, script check): its numbers must never be shown as results
QUICK_PATTERN = re.compile(r"(--quick\b|'quick': True|\bmode: quick|not results)", re.IGNORECASE)


# ----------------------------------------------------------------- helpers
def _weights_dir(config):
    if config.anr_weights_dir:
        return Path(config.anr_weights_dir)
    from astro_nn_restore.registry import weights_dir  # light: no torch import

    return weights_dir()


def _shipped(config, name):
    """The model card (dict) when both weights and card of ``name`` exist, else None."""
    folder = _weights_dir(config)
    card, weights = folder / f"{name}.json", folder / f"{name}.safetensors"
    if card.exists() and weights.exists():
        return json.loads(card.read_text())
    return None


def _indent(lines, prefix="   "):
    return [prefix + line if line.strip() else "" for line in lines]


def _insert(directive, lines):
    directive.state_machine.insert_input(StringList(lines), directive.get_source_info()[0])


# ----------------------------------------------------------------- weights-example
class WeightsExample(SphinxDirective):
    """Run an example only when the shipped weights it needs exist."""

    required_arguments = 1
    has_content = True
    option_spec = {"doctest": directives.flag, "caption": directives.unchanged}

    def run(self):
        name = self.arguments[0]
        folder = _weights_dir(self.config)
        for suffix in (".json", ".safetensors"):
            self.env.note_dependency(str(folder / f"{name}{suffix}"))
        code = list(self.content)
        if _shipped(self.config, name) is not None:
            _insert(self, self._executed(code) + [""])
        else:
            logger.info(f"[anr_docs] {self.env.docname}: weights {name} absent, example not run")
            _insert(self, self._not_run(name, code) + [""])
        return []

    def _executed(self, code):
        if "doctest" in self.options:
            return [""] + code
        lines = ["", ".. plot::", "   :include-source: true"]
        if self.options.get("caption"):
            lines.append(f"   :caption: {self.options['caption']}")
        return lines + [""] + _indent(code)

    def _not_run(self, name, code):
        language = "pycon" if "doctest" in self.options else "python"
        return [
            "",
            ".. admonition:: Weights not shipped yet: example not executed",
            "   :class: warning",
            "",
            f"   The model ``{name}`` is not in ``astro_nn_restore/weights/`` in the build",
            "   that produced this page, so the example below was not run and its",
            "   figure or output is not shown. It is executed, and the build fails if",
            "   it breaks, as soon as the weights are shipped.",
            "",
            f".. code-block:: {language}",
            "",
            *_indent(code),
        ]


# ----------------------------------------------------------------- model cards
_FIRST_KEYS = ("name", "task", "architecture", "parameters", "sha256")


def _cell(value):
    if isinstance(value, str):
        return _escape(value)
    return f"``{json.dumps(value)}``"


def _table(rows, header=("field", "value")):
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 25 75", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" if cell else "     -" for cell in row[1:])
    return lines + [""]


def _card_lines(card, level="-"):
    keys = [k for k in _FIRST_KEYS if k in card] + sorted(k for k in card if k not in _FIRST_KEYS)
    scalars = [(k, _cell(card[k])) for k in keys if not isinstance(card[k], dict | list)]
    lines = _table(scalars) if scalars else []
    for key in keys:
        value = card[key]
        if not isinstance(value, dict | list):
            continue
        lines += [f".. rubric:: {key}", ""]
        if isinstance(value, dict) and value:
            lines += _dict_lines(value)
        else:
            lines += _json_lines(value)
    return lines


def _json_lines(value):
    return [".. code-block:: json", "", *_indent(json.dumps(value, indent=2).splitlines()), ""]


def _dict_lines(value):
    """A table of the scalar entries, the training command, then nested entries as JSON."""
    rows = [(k, _cell(v)) for k, v in value.items()
            if k != "command" and not isinstance(v, dict | list)]
    lines = _table(rows) if rows else []
    if "command" in value:
        lines += ["Training command:", "", ".. code-block:: bash", "",
                  *_indent(str(value["command"]).split(" && ")), ""]
    for k, v in value.items():
        if isinstance(v, dict | list):
            lines += [f"``{k}``:", "", *_json_lines(v)]
    return lines


class ModelCards(SphinxDirective):
    """A section per shipped model card."""

    def run(self):
        folder = _weights_dir(self.config)
        self.env.note_dependency(str(folder))
        cards = sorted(folder.glob("*.json"))
        lines = []
        for path in cards:
            self.env.note_dependency(str(path))
            card = json.loads(path.read_text())
            title = path.stem
            lines += [title, "=" * len(title), ""]
            if not path.with_suffix(".safetensors").exists():
                lines += [".. warning::", "", "   The card is there but its weights file is "
                          "missing.", ""]
            lines += _card_lines(card)
        shipped = {p.stem for p in cards}
        missing = [f"{t}-default" for t in TASKS if f"{t}-default" not in shipped]
        if missing:
            names = ", ".join(f"``{m}``" for m in missing)
            lines += [".. admonition:: Not shipped yet", "   :class: warning", "",
                      f"   No weights or card yet for: {names}. These models have not been",
                      "   trained; their operations raise ``ModelLoadError`` with",
                      "   ``model=\"default\"`` until they are. A card appears here",
                      "   automatically once its files are in ``astro_nn_restore/weights/``.", ""]
        _insert(self, lines)
        return []


class ModelLimits(SphinxDirective):
    """Training ranges recorded in one model card."""

    required_arguments = 1

    def run(self):
        name = self.arguments[0]
        folder = _weights_dir(self.config)
        self.env.note_dependency(str(folder / f"{name}.json"))
        card = _shipped(self.config, name)
        if card is None:
            lines = [".. note::", "",
                     f"   ``{name}`` is not shipped yet, so no model card can be quoted here;",
                     "   the ranges above are those of its training task. Once shipped, the",
                     "   card's recorded ranges appear here and on :doc:`/models`.", ""]
        else:
            rows = [(k, _cell(v)) for k, v in sorted(card.items()) if k.endswith("_range")]
            training = card.get("training", {})
            rows += [(f"training {k}", _cell(training[k]))
                     for k in ("data", "steps", "minutes", "seed") if k in training]
            lines = [f"From the model card of ``{name}`` (sha256 "
                     f"``{str(card.get('sha256', '?'))[:16]}``):", "", *_table(rows)]
        _insert(self, lines)
        return []


# ----------------------------------------------------------------- benchmarks
_INLINE = re.compile(r"(`[^`]+`|\*\*[^*]+\*\*|\[[^\]]+\]\([^)]+\))")


def _escape(text):
    for char in "\\*_`|":
        text = text.replace(char, "\\" + char)
    return text


def _inline(text):
    """Markdown inline code, bold and links to reStructuredText; the rest escaped."""
    parts = []
    for piece in _INLINE.split(text):
        if piece.startswith("`") and piece.endswith("`") and len(piece) > 1:
            parts.append(f"\\ ``{piece[1:-1].strip()}``\\ ")
        elif piece.startswith("**") and piece.endswith("**") and len(piece) > 4:
            parts.append(f"\\ **{_escape(piece[2:-2].strip())}**\\ ")
        elif piece.startswith("[") and "](" in piece:
            label, url = piece[1:-1].split("](", 1)
            parts.append(f"\\ `{_escape(label)} <{url}>`__\\ ")
        else:
            parts.append(_escape(piece))
    text = re.sub(r"^\s*\\ ", "", "".join(parts))
    return re.sub(r"\\ \s*$", "", text).strip()


def _md_table(rows):
    cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows]
    body = [r for r in cells if not all(set(c) <= set("-: ") and c for c in r)]
    width = max(len(r) for r in body)
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in body:
        row = row + [""] * (width - len(row))
        for j, cell in enumerate(row):
            lead = "   * - " if j == 0 else "     - "
            lines.append((lead + _inline(cell)).rstrip())
    return lines + [""]


def markdown_to_rst(text, image_dir=None):
    """The small markdown subset the benchmark scripts write, as reStructuredText."""
    out, table, fence = [], [], None
    adornment = {2: "=", 3: "-", 4: "~"}
    for raw in text.splitlines() + [""]:
        line = raw.rstrip()
        if fence is not None:
            if line.startswith("```"):
                out += [".. code-block:: text", "", *_indent(fence), ""]
                fence = None
            else:
                fence.append(line)
            continue
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            out += [""] + _md_table(table)
            table = []
        if line.startswith("```"):
            fence = []
        elif match := re.match(r"^(#+)\s+(.*)$", line):
            level, title = len(match.group(1)), _inline(match.group(2))
            if level > 1:
                out += ["", title, adornment.get(level, "~") * max(len(title), 4), ""]
        elif match := re.match(r"^!\[([^\]]*)\]\(([^)]+)\)$", line.strip()):
            if image_dir is not None:
                out += ["", f".. image:: {image_dir}/{match.group(2)}",
                        f"   :alt: {match.group(1)}", ""]
        elif match := re.match(r"^(\s*)[-*]\s+(.*)$", line):
            if out and out[-1] and not re.match(r"^\s*- ", out[-1]):
                out.append("")
            out.append(f"{match.group(1)}- {_inline(match.group(2))}")
        else:
            out.append(_inline(line) if line.strip() else "")
    return out


def _header_value(text, key):
    match = re.search(rf"^[-*]\s*{key}:\s*(.+)$", text, re.MULTILINE | re.IGNORECASE)
    return match.group(1).strip() if match else "not recorded"


def _is_quick(text):
    head = text.split("\n## ", 1)[0]
    return bool(QUICK_PATTERN.search(head))


class BenchmarkReport(SphinxDirective):
    """The full-run results of one benchmark script, or why there are none."""

    required_arguments = 1

    def run(self):
        name = self.arguments[0]
        results = Path(self.config.anr_benchmark_dir)
        self.env.note_dependency(str(results))
        full, quick = None, None
        for path in sorted(results.glob(f"{name}*.md")):
            if path.stem not in (name, f"{name}_quick"):
                continue
            self.env.note_dependency(str(path))
            text = path.read_text()
            if _is_quick(text) or path.stem.endswith("_quick"):
                quick = (path, text)
            else:
                full = (path, text)
        self.env.note_dependency(str(results / f"{name}.md"))
        command = (f"python benchmarks/bench_{name}.py --model default "
                   f"--out benchmarks/results/{name}.md")
        lines = self._full(full) if full else self._missing(name, quick, command)
        _insert(self, lines)
        return []

    def _full(self, full):
        path, text = full
        image_dir = "/" + os.path.relpath(path.parent, self.env.srcdir).replace(os.sep, "/")
        return [f"Full run of ``benchmarks/results/{path.name}``: **date** "
                f"{_inline(_header_value(text, 'date'))}; **machine** "
                f"{_inline(_header_value(text, 'machine'))}.", "",
                *markdown_to_rst(text, image_dir=image_dir)]

    def _missing(self, name, quick, command):
        lines = [".. admonition:: No benchmark results yet",
                 "   :class: warning", "",
                 f"   ``benchmarks/results/{name}.md`` from a full run does not exist yet,",
                 "   so there is no result table for this operation.", ""]
        if quick is not None:
            path, text = quick
            lines += [f"   Only a ``--quick`` run exists (``{path.name}``, "
                      f"{_inline(_header_value(text, 'date'))}, on "
                      f"{_inline(_header_value(text, 'machine'))}). It runs the script on tiny",
                      "   inputs to check that it works; its numbers are not results and are",
                      "   not shown.", ""]
        return lines + ["The full run, with the shipped weights:", "",
                        ".. code-block:: bash", "", f"   {command}", ""]


# ----------------------------------------------------------------- README
class ReadmeCommand(SphinxDirective):
    """The Nth (1-based) fenced ``bash`` block of the top-level README.md, verbatim."""

    required_arguments = 1

    def run(self):
        readme = Path(self.env.srcdir).parent / "README.md"
        self.env.note_dependency(str(readme))
        blocks = re.findall(r"^```bash\n(.*?)^```", readme.read_text(), re.DOTALL | re.MULTILINE)
        index = int(self.arguments[0]) - 1
        if not 0 <= index < len(blocks):
            raise self.error(f"README.md has {len(blocks)} bash blocks, not {index + 1}")
        _insert(self, [".. code-block:: bash", "", *_indent(blocks[index].splitlines()), ""])
        return []


# ----------------------------------------------------------------- execution
def _clear_plot_cache(app):
    """Make the plot directive re-run every example (its cache is by file time only)."""
    shutil.rmtree(Path(app.doctreedir).parent / "plot_directive", ignore_errors=True)


def _always_reread(app, env, added, changed, removed):
    """Hand-written pages are re-read on every build so that their examples run."""
    return [d for d in env.found_docs if not d.startswith("api/") and d not in added | changed]


def _run_doctests(app, doctree):
    from docutils import nodes
    from pytest_doctestplus.output_checker import FLOAT_CMP, OutputChecker

    docname = app.env.docname
    if not app.config.anr_run_doctests or docname.startswith("api/"):
        return
    parser = doctest.DocTestParser()
    examples = []
    for block in doctree.findall(nodes.doctest_block):
        examples += parser.get_examples(block.astext() + "\n", name=docname)
    if not examples:
        return
    test = doctest.DocTest(examples, {"__name__": "__main__"}, docname,
                           app.env.doc2path(docname), 0, None)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | FLOAT_CMP
    runner = doctest.DocTestRunner(checker=OutputChecker(), optionflags=flags)
    report = []
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            result = runner.run(test, out=report.append)
        finally:
            os.chdir(cwd)
    logger.info(f"[anr_docs] {docname}: {result.attempted} doctest examples, "
                f"{result.failed} failed")
    if result.failed:  # a warning, like a failing plot: `-W` makes it fail the build
        logger.warning(f"{result.failed} doctest failure(s):\n" + "".join(report),
                       location=docname, type="anr_docs", subtype="doctest")


def setup(app):
    here = Path(__file__).resolve().parent.parent
    app.add_config_value("anr_weights_dir", None, "env")
    app.add_config_value("anr_benchmark_dir", str(here.parent / "benchmarks" / "results"), "env")
    app.add_config_value("anr_run_doctests", True, "env")
    app.add_directive("weights-example", WeightsExample)
    app.add_directive("model-cards", ModelCards)
    app.add_directive("model-limits", ModelLimits)
    app.add_directive("benchmark-report", BenchmarkReport)
    app.add_directive("readme-command", ReadmeCommand)
    app.connect("builder-inited", _clear_plot_cache)
    app.connect("env-get-outdated", _always_reread)
    app.connect("doctree-read", _run_doctests)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
