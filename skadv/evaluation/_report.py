"""The result of :func:`~skadv.evaluation.evaluate`: a table with intervals, a figure, files."""

import base64
import csv
import html
import io
import json
import math
import os

import numpy as np

_MARK = {"better": "▲", "worse": "▼", "overlaps": "", "": ""}
_TEXT_MARK = {"better": "+", "worse": "-", "overlaps": " ", "": " "}


def _label(metric):
    """Readable name of a metric: "pgd@0.2_auroc" -> "PGD eps=0.2 AUROC"."""
    names = {"fgsm": "FGSM", "pgd": "PGD", "cw": "C&W-L2", "adaptive": "AutoAttack", "harmful": "harmful corruptions"}
    measures = {"fpr": "FPR", "acc_rej": "accuracy with rejection", "evasion": "evasion", "tpr": "TPR",
                "auroc": "AUROC"}
    if metric == "clean_fpr":
        return "clean FPR"
    if metric == "clean_acc_rej":
        return "clean accuracy with rejection"
    head, measure = metric.rsplit("_", 1)
    attack, _, eps = head.partition("@")
    return f"{names.get(attack, attack)}{f' eps={eps}' if eps else ''} {measures.get(measure, measure)}"


def _number(value, digits=3):
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


class EvaluationReport:
    """What :func:`~skadv.evaluation.evaluate` measured: one row per detector, intervals, verdicts, settings.

    Every rate ``m`` has the columns ``m`` (the value; the mean over seeds),
    ``m_lo`` and ``m_hi`` (the bootstrap confidence interval) and
    ``m_vs_msp``: ``"better"`` or ``"worse"`` when the interval of the
    paired difference to the MSP baseline (the same resampled rows) excludes
    0, ``"overlaps"`` when the two cannot be told apart. Rates are named
    ``clean_fpr``, ``clean_acc_rej``, ``<attack>_<measure>`` with attack
    ``fgsm@<eps>``, ``pgd@<eps>``, ``cw``, ``adaptive@<eps>`` (AutoAttack)
    and measure ``evasion``, ``tpr`` or ``auroc``, and ``harmful_auroc``.
    ``adaptive@<eps>_checks`` holds the verdict of the attack-failure checks.

    Attributes
    ----------
    records : list of dict
        The table, one dict per detector (MSP included).
    table : pandas.DataFrame or list of dict
        The records as a DataFrame when pandas is installed, else ``records``.
    metrics : list of str
        The rate columns, in table order.
    checks : dict
        ``checks[detector][eps][seed]``: the attack-failure checks
        (name → Bunch(``fired``, ``value``, ``message``)) of the adaptive attack.
    settings : dict
        The evaluation's settings (seeds, split sizes, budgets, ranges, ...).
    splits : list of Bunch
        Per seed, the row indices of ``X`` that fitted the detectors (``fit``),
        fixed the thresholds (``threshold``) and were measured (``test``).
    per_seed : list of dict
        The values of every rate on each seed.
    detectors : dict
        The detectors as evaluated (fitted, thresholds fixed) on the last seed.
    observations : dict
        Per detector, the last seed's per-row observations: ``clean``,
        ``attacks[key]``, ``adaptive[key]`` and ``corrupted``, each a Bunch of
        ``scores`` (adversarial scores, higher = more adversarial),
        ``flagged`` and ``labels`` (the deployed system's).
    y_test : ndarray
        True labels of the last seed's test rows.
    rows : Bunch or None
        With ``return_rows=True``: the last seed's ``X_test``, ``y_test`` and
        attacked rows (``attacks[key]``, ``adaptive[detector][key]``).
    """

    def __init__(self, *, records, metrics, checks, settings, splits, per_seed, detectors=None, observations=None,
                 y_test=None, rows=None):
        self.detectors = detectors
        self.observations = observations
        self.y_test = y_test
        self.rows = rows
        self.records = records
        self.metrics = metrics
        self.checks = checks
        self.settings = settings
        self.splits = splits
        self.per_seed = per_seed

    @property
    def table(self):
        try:
            import pandas as pd
        except ImportError:
            return self.records
        return pd.DataFrame.from_records(self.records).set_index("detector", drop=False)

    def __repr__(self):
        names = ", ".join(r["detector"] for r in self.records)
        return f"EvaluationReport({len(self.records)} detectors: {names}; seeds {self.settings['seeds']})"

    # ------------------------------------------------------------------ text

    def headline_metrics(self):
        """The rates the terminal table and the figure show first: clean cost, PGD and AutoAttack at the largest ε."""
        eps = f"{max(self.settings['eps']):g}"
        adaptive = f"{max(self.settings['adaptive_eps']):g}"
        wanted = ["clean_fpr", "clean_acc_rej", f"pgd@{eps}_auroc", f"adaptive@{adaptive}_evasion"]
        return [m for m in wanted if m in self.metrics]

    def _cell(self, record, metric, marks=_MARK, digits=2, compact=False):
        value = record.get(metric, np.nan)
        if isinstance(value, float) and math.isnan(value):
            return "nan" + marks[""]
        mark = marks[record.get(f"{metric}_vs_msp", "")]
        sep = "," if compact else ", "
        return (f"{value:.3f} [{_number(record[f'{metric}_lo'], digits)}{sep}"
                f"{_number(record[f'{metric}_hi'], digits)}]{mark}")

    def legend_items(self, marks="▲ / ▼"):
        """What the columns mean, one sentence each."""
        s = self.settings
        level = f"{100 * s['confidence']:g} %"
        seeds = f" and over {len(s['seeds'])} seeds" if len(s["seeds"]) > 1 else ""
        return [
            f"Thresholds fixed at {s['fpr']:g} FPR on {s['n_threshold']} held-out clean rows (not used to fit); "
            f"rates measured on {s['n_test']} clean test rows and attacked copies of them.",
            f"value [lo, hi]: {level} bootstrap interval over test rows{seeds}.",
            f"{marks}: better / worse than the MSP baseline (the paired bootstrap interval of the difference "
            "excludes 0); no mark: no difference shown (the intervals overlap).",
            "clean FPR: clean rows flagged; clean accuracy with rejection: a flagged clean row is an error (the "
            "cost of deploying the detector).",
            "evasion: attacked rows misclassified and not flagged (lower is better); TPR: flagged share of the "
            "successful adversarial rows; AUROC: those rows against the clean rows.",
            "FGSM, PGD, C&W-L2: against the classifier alone (non-adaptive); AutoAttack: against classifier and "
            "detector (adaptive), with the attack-failure checks (FIRED: the attack may be too weak, the evasion "
            "is then a lower bound).",
            "harmful corruptions: AUROC of harmful (right clean, wrong corrupted) against harmless corrupted rows.",
        ]

    def legend(self, width=None, marks="▲ / ▼"):
        """What the columns mean: one paragraph, or lines of at most ``width`` characters."""
        import textwrap

        text = " ".join(self.legend_items(marks))
        return text if width is None else textwrap.fill(text, width=width)

    def to_markdown(self, metrics=None):
        """A markdown table: a row per detector, ``value [lo, hi]`` cells (▲ / ▼ against MSP), verdicts, times.

        Parameters
        ----------
        metrics : list of str, default=None
            The rate columns to show; None: all of them.
        """
        metrics = self.metrics if metrics is None else list(metrics)
        checks = [c for c in self.records[0] if c.endswith("_checks")]
        header = ["detector", *(_label(m) for m in metrics), *(f"{c[:-7].replace('adaptive', 'AutoAttack')} "
                                                               "checks" for c in checks), "fit s", "score ms/1k"]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        for r in self.records:
            cells = [r["detector"], *(self._cell(r, m) for m in metrics), *(r[c] for c in checks),
                     f"{r['fit_s']:.1f}", f"{r['score_ms_per_1k']:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_text(self, width=100):
        """A plain table of the headline rates that fits ``width`` columns, and the checks that fired.

        Cells are ``value [lo,hi]`` with ``+`` / ``-`` where the detector is
        better / worse than MSP beyond the noise. The other rates are in the
        files :meth:`save` writes.
        """
        name_width = max(len("detector"), *(len(r["detector"]) for r in self.records)) + 1
        cell = 19
        metrics = self.headline_metrics()[: max(1, (width - name_width) // (cell + 1))]
        heads = [_two_line_header(m) for m in metrics]
        lines = [
            "".ljust(name_width) + " ".join(top.rjust(cell) for top, _ in heads),
            "detector".ljust(name_width) + " ".join(bottom.rjust(cell) for _, bottom in heads),
        ]
        lines.append("-" * len(lines[1]))
        for r in self.records:
            lines.append(r["detector"].ljust(name_width)
                         + " ".join(self._cell(r, m, _TEXT_MARK, compact=True).rjust(cell) for m in metrics))
        fired = [(r["detector"], c, r[c]) for r in self.records for c in r if c.endswith("_checks")
                 and "FIRED" in r[c]]
        lines.append(f"value [lo,hi]: {100 * self.settings['confidence']:g} % bootstrap interval; "
                     "+ / -: better / worse than MSP beyond the noise.")
        for name, column, text in fired:
            lines.append(f"{name}: {_attack_name(column[:-7])} failure checks: {text}")
        return "\n".join(line[:width] for line in lines)

    def to_attack_text(self, width=100):
        """One line per detector and attack: evasion, TPR and AUROC with intervals (fits ``width`` columns)."""
        attacks = [m[: -len("_evasion")] for m in self.metrics if m.endswith("_evasion")]
        name_width = max(len("detector"), *(len(r["detector"]) for r in self.records)) + 1
        attack_width = max(len("attack"), *(len(_attack_name(a)) for a in attacks)) + 1
        cell = 19
        header = ("detector".ljust(name_width) + "attack".ljust(attack_width)
                  + " ".join(h.rjust(cell) for h in ("evasion", "TPR", "AUROC")))
        lines = [header, "-" * len(header)]
        for r in self.records:
            for i, attack in enumerate(attacks):
                lead = (r["detector"] if i == 0 else "").ljust(name_width) + _attack_name(attack).ljust(attack_width)
                lines.append(lead + " ".join(self._cell(r, f"{attack}_{m}", _TEXT_MARK, compact=True).rjust(cell)
                                             for m in ("evasion", "tpr", "auroc")))
        return "\n".join(line[:width] for line in lines)

    # ------------------------------------------------------------------ figure

    def plot(self, *, title=None, note=None, warning=False):
        """The evaluation's figure: non-adaptive AUROCs and adaptive evasion per detector, with intervals.

        Parameters
        ----------
        title : str, default=None
            First line of the figure's title (None: "Detection evaluation").
        note : str, default=None
            A line under the title (e.g. what the numbers are not).
        warning : bool, default=False
            Draw the title in red.

        Returns
        -------
        figure : matplotlib Figure
        """
        import matplotlib.pyplot as plt

        records = self.records
        names = [r["detector"] for r in records]
        y = np.arange(len(records))
        eps = f"{max(self.settings['eps']):g}"
        auroc = [(m, _label(m).replace(" AUROC", "")) for m in
                 (f"fgsm@{eps}_auroc", f"pgd@{eps}_auroc", "cw_auroc", "harmful_auroc") if m in self.metrics]
        adaptive = [m for m in self.metrics if m.startswith("adaptive@") and m.endswith("_evasion")]
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.6 * len(records) + 2.6), sharey=True,
                                          gridspec_kw={"width_ratios": [3, 2]})
        colors = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]
        height = 0.8 / max(1, len(auroc))
        for i, ((metric, label), color) in enumerate(zip(auroc, colors)):
            self._bars(left, y - 0.4 + (i + 0.5) * height, metric, height, color, label)
        left.axvline(0.5, color="grey", ls="--", lw=0.8)
        left.set(xlim=(0, 1), xlabel="AUROC, non-adaptive (0.5 = chance; higher is better)", yticks=y,
                 yticklabels=names)
        left.invert_yaxis()
        left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)

        series = [(m, _label(m), c) for m, c in zip(adaptive, ["tab:red", "darkred", "salmon", "maroon"])]
        series.append(("clean_fpr", f"clean FPR (dotted: the {self.settings['fpr']:g} target)", "tab:grey"))
        height = 0.8 / len(series)
        for i, (metric, label, color) in enumerate(series):
            self._bars(right, y - 0.4 + (i + 0.5) * height, metric, height, color, label)
        right.axvline(self.settings["fpr"], color="black", ls=":", lw=0.8)
        for i, metric in enumerate(adaptive):
            for yi, r in zip(y, records):
                text = r.get(f"{metric[: -len('_evasion')]}_checks", "")
                if "FIRED" in text:
                    right.text(0.02, yi - 0.4 + (i + 0.5) * height, text, va="center", fontsize=7, color="black",
                               bbox={"facecolor": "white", "alpha": 0.85, "lw": 0, "pad": 1})
        right.set(xlim=(0, 1), xlabel="share of rows (lower is better)")
        right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, fontsize=8, frameon=False)
        s = self.settings
        level = f"{100 * s['confidence']:g} %"
        lines = [
            f"{title or 'Detection evaluation'}: thresholds at {s['fpr']:g} FPR on held-out clean rows; "
            f"{s['n_test']} test rows, seed(s) {', '.join(map(str, s['seeds']))}; "
            f"error bars: {level} bootstrap intervals"]
        if note:
            lines.append(note.replace("`", ""))
        fig.suptitle("\n".join(lines), fontsize=10, color="tab:red" if warning else "black")
        fig.tight_layout()
        return fig

    def plot_security(self):
        """Evasion and TPR under the adaptive AutoAttack against its budget, per detector, with intervals.

        The security-evaluation curve of the table's own adaptive rows (the
        ``adaptive@<eps>`` columns, the same attack on the same rows); MSP is
        drawn dashed black.

        Returns
        -------
        figure : matplotlib Figure
        """
        import matplotlib.pyplot as plt

        eps = [f"{e:g}" for e in self.settings["adaptive_eps"]]
        x = np.array(self.settings["adaptive_eps"], dtype=float)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharex=True)
        measures = [("evasion", "evasion: misclassified and not flagged\n(lower is better)"),
                    ("tpr", "TPR: flagged share of the successful\nadversarial rows (higher is better)")]
        # Detectors side by side around each budget, so that their error bars do not cover each other.
        spacing = np.min(np.diff(np.sort(x))) if x.size > 1 else max(x[0], 1e-3)
        offsets = (np.arange(len(self.records)) - (len(self.records) - 1) / 2) * 0.5 * spacing / len(self.records)
        for ax, (measure, ylabel) in zip(axes, measures):
            for i, r in enumerate(self.records):
                values = np.array([r.get(f"adaptive@{e}_{measure}", np.nan) for e in eps], dtype=float)
                lo = np.array([r.get(f"adaptive@{e}_{measure}_lo", np.nan) for e in eps], dtype=float)
                hi = np.array([r.get(f"adaptive@{e}_{measure}_hi", np.nan) for e in eps], dtype=float)
                baseline = r["detector"] == "MSP"
                style = {"color": "black", "ls": "--"} if baseline else {"color": f"C{i}"}
                ax.errorbar(x + offsets[i], values, yerr=np.nan_to_num(np.vstack([values - lo, hi - values])),
                            marker="o", ms=4, capsize=3, lw=1.3, elinewidth=0.9, label=r["detector"], **style)
            ax.set_xticks(x, [f"{e:g}" for e in x])
            ax.set(xlabel="eps: L-inf budget of the adaptive AutoAttack", ylabel=ylabel, ylim=(-0.02, 1.02))
            ax.grid(alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), frameon=False, fontsize=9)
        s = self.settings
        fig.suptitle(
            f"Security evaluation: adaptive AutoAttack on {min(s['budget']['n_adaptive'], s['n_test'])} test rows "
            f"(the table's adaptive rows); thresholds at {s['fpr']:g} FPR; error bars: {100 * s['confidence']:g} % "
            "bootstrap intervals", fontsize=10)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        return fig

    def _bars(self, ax, positions, metric, height, color, label):
        values = np.array([r.get(metric, np.nan) for r in self.records], dtype=float)
        lo = np.array([r.get(f"{metric}_lo", np.nan) for r in self.records], dtype=float)
        hi = np.array([r.get(f"{metric}_hi", np.nan) for r in self.records], dtype=float)
        err = np.nan_to_num(np.vstack([values - lo, hi - values]))
        ax.barh(positions, np.nan_to_num(values), height, color=color, label=label,
                xerr=err, error_kw={"elinewidth": 0.9, "capsize": 2, "ecolor": "black"})

    # ------------------------------------------------------------------ files

    def to_html(self, *, title=None, note=None, warning=False):
        """A self-contained HTML page: settings, the table, the figures (embedded), the failure verdicts.

        Parameters
        ----------
        title, note, warning : see :meth:`plot`.
        """
        import matplotlib.pyplot as plt

        images = []
        for fig in (self.plot(title=title, note=note, warning=warning), self.plot_security()):
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=100)
            plt.close(fig)
            images.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
        e = html.escape
        # Rates as rows, detectors as columns: a handful of columns, however many attacks.
        header = "<tr><th>rate</th>" + "".join(f"<th>{e(r['detector'])}</th>" for r in self.records) + "</tr>"
        rows = []
        for m in self.metrics:
            cells = [f"<th>{e(_label(m))}</th>"]
            for r in self.records:
                cells.append(f'<td class="{r.get(f"{m}_vs_msp", "")}">{e(self._cell(r, m))}</td>')
            rows.append("<tr>" + "".join(cells) + "</tr>")
        names = list(dict.fromkeys(c for by_eps in self.checks.values() for by_seed in by_eps.values()
                                   for found in by_seed.values() for c in found))
        checks, messages = [], []
        for name, by_eps in self.checks.items():
            for eps, by_seed in by_eps.items():
                for seed, found in by_seed.items():
                    cells = []
                    for check in names:
                        result = found.get(check)
                        if result is None:
                            cells.append("<td></td>")
                            continue
                        value = result.value if isinstance(result.value, (int, float)) else float("nan")
                        state = "FIRED" if result.fired else "ok"
                        cells.append(f'<td class="{state}">{state} ({_number(value)})</td>')
                        if result.fired:
                            where = f"{e(name)}, eps={e(eps)}, seed {seed}"
                            messages.append(f"<li><b>{where}</b>: {e(result.message)}</li>")
                    checks.append(f"<tr><th>{e(name)}</th><td>{e(eps)}</td><td>{seed}</td>{''.join(cells)}</tr>")
        checks_header = ("<tr><th>detector</th><th>eps</th><th>seed</th>"
                         + "".join(f"<th>{e(c)}</th>" for c in names) + "</tr>")
        fired = f"<ul>{''.join(messages)}</ul>" if messages else "<p>No check fired.</p>"
        settings = "".join(f"<tr><th>{e(str(k))}</th><td>{e(json.dumps(v, default=str))}</td></tr>"
                           for k, v in self.settings.items())
        times = "".join(f"<tr><th>{e(r['detector'])}</th><td>{r['fit_s']:.1f}</td><td>{r['score_ms_per_1k']:.1f}"
                        f"</td><td>{e(r['fitted_by'])}</td><td>{e(r['threshold'])}</td></tr>" for r in self.records)
        note_html = f'<p class="{"warning" if warning else "note"}">{e(note)}</p>' if note else ""
        return _HTML.format(
            title=e(title or "Detection evaluation"), note=note_html,
            legend="".join(f"<li>{e(item)}</li>" for item in self.legend_items()), header=header,
            rows="\n".join(rows), image=images[0], security=images[1], checks="\n".join(checks),
            checks_header=checks_header, fired=fired, settings=settings, times=times,
        )

    def save(self, directory, stem="evaluation", *, title=None, note=None, warning=False):
        """Write ``<stem>.csv`` (the table), ``.md`` (table and legend), ``.png`` (the figure) and ``.html``.

        Parameters
        ----------
        directory : str or path-like
            Created if missing.
        stem : str, default="evaluation"
        title, note, warning : see :meth:`plot`; also in the markdown and the HTML page.

        Returns
        -------
        paths : list of str
            The four files written.
        """
        import matplotlib.pyplot as plt

        os.makedirs(directory, exist_ok=True)
        base = os.path.join(os.fspath(directory), stem)
        columns = list(dict.fromkeys(c for r in self.records for c in r))
        with open(base + ".csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.records)
        with open(base + ".md", "w", encoding="utf-8") as f:
            f.write(f"# {title or 'Detection evaluation'}\n\n")
            if note:
                f.write(f"**{note}**\n\n" if warning else f"{note}\n\n")
            f.write(f"{self.to_markdown()}\n\n{self.legend()}\n\nBudget: {self.settings['budget_text']}.\n")
        fig = self.plot(title=title, note=note, warning=warning)
        fig.savefig(base + ".png", dpi=110)
        plt.close(fig)
        with open(base + ".html", "w", encoding="utf-8") as f:
            f.write(self.to_html(title=title, note=note, warning=warning))
        return [base + ext for ext in (".csv", ".md", ".png", ".html")]


def _two_line_header(metric):
    """("PGD eps=0.2", "AUROC"): a header of at most 19 characters per line."""
    if metric == "clean_fpr":
        return "clean", "FPR"
    if metric == "clean_acc_rej":
        return "clean accuracy", "with rejection"
    head, measure = metric.rsplit("_", 1)
    return _attack_name(head), _label(f"x_{measure}")[2:]


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; white-space: nowrap; }}
th {{ background: #f3f3f3; text-align: left; }}
td.better {{ background: #e3f4e1; }} td.worse {{ background: #fbe3e1; }}
td.FIRED {{ background: #fff2cc; font-weight: bold; }}
.scroll {{ overflow-x: auto; }} p, li {{ max-width: 75em; line-height: 1.4; }}
table.settings td {{ white-space: normal; text-align: left; max-width: 70em; }}
img {{ max-width: 100%; border: 1px solid #ddd; display: block; margin: 0.5em 0; }}
p.warning {{ color: #b00; font-weight: bold; }}
</style></head><body>
<h1>{title}</h1>
{note}
<ul>{legend}</ul>
<p>Green / red cells: better / worse than the MSP baseline beyond the noise.</p>
<div class="scroll"><table>{header}
{rows}</table></div>
<img alt="AUROC and evasion per detector, with confidence intervals" src="data:image/png;base64,{image}">
<img alt="Evasion and TPR under the adaptive attack against its budget" src="data:image/png;base64,{security}">
<h2>Attack-failure checks of the adaptive attack</h2>
<p>Each check's verdict and value (Pintor et al. 2022): a FIRED check means the attack may be too weak there, so
the evasion rate is a lower bound.</p>
<table>{checks_header}
{checks}</table>
{fired}
<h2>Fit and scoring time</h2>
<table><tr><th>detector</th><th>fit + threshold s</th><th>score ms per 1000 rows</th><th>fitted by</th>
<th>threshold</th></tr>
{times}</table>
<h2>Settings</h2>
<table class="settings">{settings}</table>
</body></html>
"""


def _attack_name(attack):
    """ "pgd@0.2" -> "PGD eps=0.2" """
    return _label(f"{attack}_x")[:-2]
