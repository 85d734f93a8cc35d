"""C1, the identical-class test: rho = share of a generated image's top-k contributors that
carry its label, averaged over the set's labelled generated images (method.md)."""
from __future__ import annotations

from gmv_store.errors import BadInput


def class_ratio(con, set_name: str, ks: list[int]) -> list[dict]:
    """rho for each k <= the set's k (the top-k for a smaller k is a prefix of the stored one)."""
    row = con.execute("SELECT k, m FROM sets WHERE set_name = ?", [set_name]).fetchone()
    if row is None:
        raise BadInput(f"set '{set_name}' does not exist; fix: value it first with `gmv value ... --set {set_name}`")
    set_k = row[0]
    out = []
    for k in ks:
        if k > set_k:
            raise BadInput(f"k={k} exceeds the set's k={set_k}; fix: value into a set with --k {k} or more")
        r = con.execute(
            """
            SELECT avg(rho), count(*), avg(n) FROM (
              SELECT s.generated_id, avg(CASE WHEN c.label = g.label THEN 1.0 ELSE 0.0 END) AS rho, count(*) AS n
              FROM scores s
              JOIN generated g USING (set_name, generated_id)
              JOIN contributors c USING (contributor_id)
              WHERE s.set_name = ? AND s.rank <= ? AND g.label IS NOT NULL AND c.label IS NOT NULL
              GROUP BY s.generated_id)
            """,
            [set_name, k],
        ).fetchone()
        if not r[1]:
            raise BadInput(f"set '{set_name}' has no labelled generated images with labelled contributors; "
                           "fix: value with --label/--label-from and ingest labelled training images")
        out.append({"set_name": set_name, "k": k, "rho": r[0], "generated": r[1]})
    return out
