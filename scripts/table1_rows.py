"""Markdown rows of the Table 1 evals written by scripts/table1.sh: python scripts/table1_rows.py OUT [pairs...]"""
import json
import sys
from pathlib import Path

GT = ("jaw_open", "smile_left", "smile_right", "blink_left", "blink_right", "brow_raise", "brow_frown", "pucker")


def f(v, spec=".3f"):
    return "–" if v is None else format(v, spec)


def common(r: dict) -> str:
    if r["stability_common"] is None and r["frozen_share"] is not None:
        return f"frozen ({r['frozen_share']:.0%})"
    return f(r["stability_common"])


def row(pair: str, name: str, r: dict, base: dict | None) -> str:
    """`base`: the MediaPipe run beside it (stability_common is a pair: ours and MediaPipe's under one mask)."""
    common_cell = "–" if base is None else f"{common(r)} vs {common(base)}"
    cells = [pair, name, f(r["nme"], ".2f"), f(r["motion_mm"], ".2f"), f(r["motion_ratio"], ".2f"), common_cell,
             f(r["stability_unguarded"]), f(r["stability"]), f(r["stability_excluded"], ".0%")]
    if r.get("gt_frames"):
        cells += [f(r["vertex_error_nonrigid"]), f(r["motion_ratio_gt"], ".2f"),
                  " / ".join(f((r["expression_r"] or {}).get(k), ".2f") for k in GT)]
    else:
        cells += ["no GT"] * 3
    return "| " + " | ".join(cells) + " |"


def main(out: Path, pairs: list[str]) -> None:
    for pair in pairs:
        d = out / pair
        runs = {m: json.loads((d / f"eval_{m}.json").read_text()) for m in ("pkg", "pkg_noda", "teacher")}
        print(row(pair, "MediaPipe FaceMesh", runs["pkg"]["baseline"], None))
        for m, name in (("teacher", "teacher (our port, our loop)"), ("pkg_noda", "ours w/o DA (package)"),
                        ("pkg", "ours full DA (package)")):
            print(row(pair, name, runs[m], runs[m]["baseline"]))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:] or ["synthetic", "lily", "obama"])
