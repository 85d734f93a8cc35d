"""Recall lists: the batched merges against a brute-force ranking (ties and equal scores
included), their round trip through the ledger, and what the merges spare (no search while
a list keeps N candidates)."""
import duckdb
import numpy as np
import pytest

from gmv_store.migrate import migrate
from gmv_store.query.merge import best_k, isin_rows
from gmv_store.query.recall_lists import Lists, add, capacity, drop, read_lists, write_lists


def brute(ids: np.ndarray, scores: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Every point in the one ranking order: better score, then smaller id."""
    key = -scores if metric == "cosine" else scores
    order = np.lexsort((ids, key))
    return ids[order], scores[order]


def world(rng, n_points: int, ties: bool):
    """Distinct ids; scores drawn from few values when `ties` (many exact ties)."""
    ids = rng.choice(np.arange(1, 10 * n_points + 10, dtype=np.uint64), n_points, replace=False)
    scores = rng.integers(0, 6, n_points).astype(np.float64) / 5 if ties else rng.random(n_points)
    return ids, scores


@pytest.mark.parametrize("metric", ["cosine", "euclid"])
@pytest.mark.parametrize("ties", [False, True])
def test_add_and_drop_equal_a_ranking_from_scratch(metric, ties):
    rng = np.random.default_rng(1 if ties else 0)
    n, cap = 6, 9
    for trial in range(40):
        m = 12
        worlds, rows_ids, rows_scores, complete = [], [], [], []
        for _ in range(m):
            t_ids, t_scores = world(rng, int(rng.integers(1, 30)), ties)
            b_ids, b_scores = brute(t_ids, t_scores, metric)
            length = len(b_ids) if len(b_ids) <= cap else int(rng.integers(n, cap + 1))
            worlds.append((t_ids, t_scores))
            rows_ids.append(b_ids[:length])
            rows_scores.append(b_scores[:length])
            complete.append(len(b_ids) <= length)
        lists = Lists.from_rows([str(i) for i in range(m)], rows_ids, rows_scores, complete)

        # additions: the points at least as good as the last candidate (all, for a complete list)
        news = []
        e_ids = np.zeros((m, cap), np.uint64)
        e_scores = np.full((m, cap), np.nan)
        e_len = np.zeros(m, np.int64)
        e_all = np.zeros(m, np.int64)
        for i, _ in enumerate(worlds):
            p_ids = np.arange(10_000 + 100 * i, 10_000 + 100 * i + int(rng.integers(0, 8)), dtype=np.uint64)
            p_scores = (rng.integers(0, 6, len(p_ids)) / 5 if ties else rng.random(len(p_ids))).astype(np.float64)
            news.append((p_ids, p_scores))
            last = rows_scores[i][-1] if len(rows_scores[i]) else None
            ok = np.ones(len(p_ids), bool) if complete[i] or last is None else (
                p_scores >= last if metric == "cosine" else p_scores <= last)
            q_ids, q_scores = brute(p_ids[ok], p_scores[ok], metric)
            e_all[i] = len(q_ids)
            q_ids, q_scores = q_ids[:cap], q_scores[:cap]
            e_len[i] = len(q_ids)
            e_ids[i, :len(q_ids)], e_scores[i, :len(q_ids)] = q_ids, q_scores
        moved = add(lists, e_ids, e_scores, e_len, cap, metric, e_all=e_all)
        for i, ((t_ids, t_scores), (p_ids, p_scores)) in enumerate(zip(worlds, news)):
            want_ids, want_scores = brute(np.concatenate([t_ids, p_ids]), np.concatenate([t_scores, p_scores]), metric)
            got_ids, got_scores = moved.lists.row(i)
            assert len(got_ids) >= min(len(rows_ids[i]), cap)  # never shorter, at most the capacity
            assert np.array_equal(got_ids, want_ids[:len(got_ids)]), (trial, i)
            assert np.array_equal(got_scores, want_scores[:len(got_ids)])
            assert moved.lists.complete[i] == (len(got_ids) == len(want_ids))
            # each old candidate's new place
            for c, pid in enumerate(rows_ids[i]):
                pos = moved.old_pos[i, c]
                assert (pos < 0 and pid not in got_ids) or got_ids[pos] == pid

        # removals: drop some of each world's points, inside or outside the list
        removed = np.unique(np.concatenate([w[0][rng.random(len(w[0])) < 0.3] for w in worlds]))
        moved = drop(lists, removed)
        for i, (t_ids, t_scores) in enumerate(worlds):
            keep = ~np.isin(t_ids, removed)
            want_ids, _ = brute(t_ids[keep], t_scores[keep], metric)
            got_ids, _ = moved.lists.row(i)
            assert len(got_ids) == len(rows_ids[i]) - np.isin(rows_ids[i], removed).sum()
            assert np.array_equal(got_ids, want_ids[:len(got_ids)])


def test_best_k_orders_by_distance_then_id():
    ids = np.array([[5, 3, 9, 1, 7]], dtype=np.uint64)
    dist = np.array([[0.5, 0.5, 0.1, 0.5, 2.0]])
    valid = np.array([[True, True, True, True, False]])
    top, d, count = best_k(ids, dist, valid, 3)
    assert top.tolist() == [[9, 1, 3]] and d.tolist() == [[0.1, 0.5, 0.5]] and count.tolist() == [3]


def test_isin_rows_is_per_row():
    a = np.array([[1, 2], [1, 2]], dtype=np.uint64)
    b = np.array([[2, 0], [3, 1]], dtype=np.uint64)
    assert isin_rows(a, b, np.array([[True, False], [True, True]])).tolist() == [[False, True], [True, False]]


def test_lists_round_trip_through_the_ledger(tmp_path):
    con = duckdb.connect(str(tmp_path / "l.duckdb"))
    migrate(con)
    rng = np.random.default_rng(0)
    gids = ["b", "a", "c", "d"]
    rows = [rng.integers(0, 2**64 - 1, n, dtype=np.uint64) for n in (3, 0, 5, 1)]
    scores = [rng.random(len(r)) for r in rows]
    lists = Lists.from_rows(gids, rows, scores, [False, True, False, True])
    write_lists(con, "s", lists, new=True)
    back = read_lists(con, "s", ["d", "zz", "a", "b", "c"], metric="cosine")  # in the order asked, unknown ids left out
    assert back.gids == ["d", "a", "b", "c"]
    for g in back.gids:
        i, j = back.gids.index(g), gids.index(g)
        assert np.array_equal(back.row(i)[0], rows[j]) and np.array_equal(back.row(i)[1], scores[j])
        assert back.complete[i] == lists.complete[j]
    changed = Lists.from_rows(["c", "e"], [rows[0], rows[3]], [scores[0], scores[3]], [True, False])
    write_lists(con, "s", changed)  # replaces c, inserts e
    back = read_lists(con, "s", metric="cosine")
    assert back.gids == ["a", "b", "c", "d", "e"]
    assert np.array_equal(back.row(2)[0], rows[0]) and back.complete[2]


def test_capacity_keeps_a_reserve():
    assert capacity(500) == 550 and capacity(12) == 16 and capacity(1) == 5


@pytest.mark.parametrize("metric", ["cosine", "euclid"])
def test_changes_stored_as_deltas_read_back_exactly(tmp_path, metric):
    """Lists changed again and again, each time stored (as their changes, or whole once those
    grow) and read back: always the exact best of the training set as it is then."""
    con = duckdb.connect(str(tmp_path / "l.duckdb"))
    migrate(con)
    rng = np.random.default_rng(7)
    cap, m = 26, 8
    worlds = [world(rng, int(rng.integers(5, 60)), ties=True) for _ in range(m)]
    rows_ids, rows_scores, complete = [], [], []
    for t_ids, t_scores in worlds:
        b_ids, b_scores = brute(t_ids, t_scores, metric)
        rows_ids.append(b_ids[:cap])
        rows_scores.append(b_scores[:cap])
        complete.append(len(b_ids) <= cap)
    gids = [f"g{i}" for i in range(m)]
    write_lists(con, "s", Lists.from_rows(gids, rows_ids, rows_scores, complete), new=True)
    next_id = 1_000_000
    for step in range(12):
        lists = read_lists(con, "s", gids, metric=metric)
        for i, (t_ids, t_scores) in enumerate(worlds):
            want, _ = brute(t_ids, t_scores, metric)
            got, _ = lists.row(i)
            assert np.array_equal(got, want[:len(got)]) and (lists.complete[i] == (len(got) == len(want))), (step, i)
        if step % 3 == 2:
            removed = np.unique(np.concatenate([w[0][rng.random(len(w[0])) < 0.1] for w in worlds]))
            moved = drop(lists, removed)
            worlds = [(w[0][~np.isin(w[0], removed)], w[1][~np.isin(w[0], removed)]) for w in worlds]
        else:
            e = int(rng.integers(1, 6))
            e_ids = np.zeros((m, e), np.uint64)
            e_scores = np.full((m, e), np.nan)
            e_len = np.zeros(m, np.int64)
            for i in range(m):
                p_ids = np.arange(next_id, next_id + e, dtype=np.uint64)
                next_id += e
                p_scores = rng.integers(0, 6, e) / 5
                last = lists.row(i)[1][-1] if lists.length[i] else None
                ok = np.ones(e, bool) if lists.complete[i] or last is None else (
                    p_scores >= last if metric == "cosine" else p_scores <= last)
                e_len[i] = ok.sum()
                e_ids[i, :ok.sum()], e_scores[i, :ok.sum()] = p_ids[ok], p_scores[ok]
                worlds[i] = (np.concatenate([worlds[i][0], p_ids]), np.concatenate([worlds[i][1], p_scores]))
            moved = add(lists, e_ids, e_scores, e_len, cap, metric)
        write_lists(con, "s", moved.lists)
    added, dropped = con.execute("SELECT count(*) FILTER (WHERE octet_length(added_ids) > 0), "
                                 "count(*) FILTER (WHERE octet_length(dropped_ids) > 0) FROM recall_changes").fetchone()
    assert added and dropped  # lists stored as their changes, not only rewritten whole


def test_dropped_cells_are_per_row():
    """A list's dropped ids hide only its own base cells: an id dropped from one list (a
    training image forgotten, then ingested again and merged into another list) stays in a
    list that did not drop it. Checked against np.isin row by row."""
    from gmv_store.query.merge import _gone_cells

    rng = np.random.default_rng(3)
    m, w, d = 40, 30, 5
    ids = rng.integers(1, 60, (m, w)).astype(np.uint64)  # few values: the same id in many rows
    n_dropped = rng.integers(0, d + 1, m)
    dropped = np.where(np.arange(d) < n_dropped[:, None], rng.integers(1, 60, (m, d)), 0).astype(np.uint64)
    lengths = rng.integers(0, w + 1, m)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = ids[np.arange(w) < lengths[:, None]]
    got = _gone_cells(flat, offsets, dropped, n_dropped)
    want = np.concatenate([np.isin(ids[r, :lengths[r]], dropped[r, :n_dropped[r]]) for r in range(m)])
    assert got.tolist() == np.flatnonzero(want).tolist()
    assert want.any() and (~want & np.isin(flat, dropped[np.arange(d) < n_dropped[:, None]])).any()
    assert len(_gone_cells(flat, offsets, dropped[:, :0], np.zeros(m, np.int64))) == 0


@pytest.mark.parametrize("metric", ["cosine", "euclid"])
@pytest.mark.parametrize("ties", [False, True])
def test_rebuild_equals_a_ranking_of_the_stored_parts(metric, ties):
    """A list from its stored form (base less its dropped ids, merged with the added
    candidates, cut at its length) equals sorting those parts together; a length past the
    cells there are (a store short of them) leaves the rest empty."""
    from gmv_store.query.merge import rebuild

    rng = np.random.default_rng(11 if ties else 12)
    for trial in range(30):
        m = 25
        bases, adds, drops, lengths, wants = [], [], [], [], []
        for r in range(m):
            t_ids, t_scores = world(rng, int(rng.integers(0, 40)), ties)
            in_add = rng.random(len(t_ids)) < 0.2
            b_ids, b_scores = brute(t_ids[~in_add], t_scores[~in_add], metric)
            a_ids, a_scores = brute(t_ids[in_add], t_scores[in_add], metric)
            gone = b_ids[rng.random(len(b_ids)) < 0.15]
            if r % 7 == 3 and len(a_ids):  # an id dropped from the base and added again since
                b_ids, b_scores = brute(np.append(b_ids, a_ids[0]), np.append(b_scores, a_scores[0] + 1), metric)
                gone = np.append(gone, a_ids[0])
            kept = ~np.isin(b_ids, gone)
            all_ids = np.concatenate([b_ids[kept], a_ids])
            all_scores = np.concatenate([b_scores[kept], a_scores])
            from_base = np.concatenate([np.ones(kept.sum(), bool), np.zeros(len(a_ids), bool)])
            key = -all_scores if metric == "cosine" else all_scores
            order = np.lexsort((all_ids, key))
            total = len(order)
            length = total + 2 if r % 11 == 5 else int(rng.integers(0, total + 1))
            bases.append((b_ids, b_scores))
            adds.append((a_ids, a_scores))
            drops.append(gone.astype(np.uint64))
            lengths.append(length)
            wants.append((all_ids[order][:length], all_scores[order][:length], from_base[order][:length]))
        n_dropped = np.array([len(g) for g in drops])
        dropped = np.zeros((m, max(1, n_dropped.max())), np.uint64)
        for r, g in enumerate(drops):
            dropped[r, :len(g)] = g
        cat = np.concatenate
        ids, scores, based = rebuild(cat([b[0] for b in bases]).astype(np.uint64), cat([b[1] for b in bases]),
                                     np.array([len(b[0]) for b in bases]), cat([a[0] for a in adds]).astype(np.uint64),
                                     cat([a[1] for a in adds]), np.array([len(a[0]) for a in adds]), dropped, n_dropped,
                                     np.array(lengths), metric)
        assert ids.shape == (m, max(lengths))
        for r, (w_ids, w_scores, w_based) in enumerate(wants):
            n = len(w_ids)
            assert ids[r, :n].tolist() == w_ids.tolist(), (trial, r)
            assert np.array_equal(scores[r, :n], w_scores) and based[r, :n].tolist() == w_based.tolist()
            assert (ids[r, n:] == 0).all() and np.isnan(scores[r, n:]).all() and not based[r, n:].any()


@pytest.mark.parametrize("ties", [False, True])
def test_merge_positions_equal_a_sort_of_both(ties):
    """The vectorised bisection places every cell where sorting both lists together would."""
    from gmv_store.query.merge import merge_positions

    rng = np.random.default_rng(7)
    m, wa, wb = 60, 40, 9
    a_len, b_len = rng.integers(0, wa + 1, m), rng.integers(0, wb + 1, m)
    a_len[0], b_len[1] = 0, 0  # an empty list, a row with nothing added

    def draw(w):
        key = rng.integers(0, 12, (m, w)).astype(float) if ties else rng.random((m, w))
        return key, rng.choice(10_000, (m, w)).astype(np.uint64)

    (ak, ai), (bk, bi) = draw(wa), draw(wb)
    bi += np.uint64(10_000)  # ids differ between the two lists, as in a refresh
    for key, ids, n in ((ak, ai, a_len), (bk, bi, b_len)):
        o = np.lexsort((ids, key), axis=1)
        key[:], ids[:] = np.take_along_axis(key, o, 1), np.take_along_axis(ids, o, 1)
        key[np.arange(key.shape[1]) >= n[:, None]] = np.inf
    a_pos, b_pos = merge_positions(ak, ai, a_len, bk, bi, b_len)
    for r in range(m):
        keys = np.concatenate([ak[r, :a_len[r]], bk[r, :b_len[r]]])
        ids = np.concatenate([ai[r, :a_len[r]], bi[r, :b_len[r]]])
        rank = np.empty(len(keys), np.int64)
        rank[np.lexsort((ids, keys))] = np.arange(len(keys))
        assert a_pos[r, :a_len[r]].tolist() == rank[:a_len[r]].tolist()
        assert b_pos[r, :b_len[r]].tolist() == rank[a_len[r]:].tolist()
        assert (b_pos[r, b_len[r]:] == -1).all()


def test_isin_sorted_equals_isin():
    """The low-bits table only rules values out: hash-like ids, ids sharing low bits, small sets."""
    from gmv_store.query.merge import isin_sorted

    rng = np.random.default_rng(3)
    values = rng.integers(0, 2**63, (40, 30), dtype=np.uint64)
    for chosen in (np.zeros(0, np.uint64), values[3, :1], rng.choice(values.ravel(), 50),
                   np.arange(0, 1 << 20, 1 << 12, dtype=np.uint64) + values[0, 0]):  # same low bits
        s = np.unique(np.concatenate([chosen, rng.integers(0, 2**63, 20, dtype=np.uint64)]))
        v = np.concatenate([values, s[None, :30] if len(s) >= 30 else values[:1]])
        assert (isin_sorted(v, s) == np.isin(v, s)).all()


def test_columns_moves_masked_cells_to_the_front_in_order():
    from gmv_store.query.merge import columns

    rng = np.random.default_rng(5)
    mask = rng.random((30, 12)) < 0.4
    mask[0] = False  # an empty row
    ids, dist = rng.integers(0, 1000, mask.shape).astype(np.uint64), rng.random(mask.shape)
    count, got_ids, got_dist = columns(mask, ids, dist, fill=7)
    assert got_ids.dtype == np.uint64 and got_ids.shape[1] == mask.sum(axis=1).max()
    for r in range(len(mask)):
        n = mask[r].sum()
        assert count[r] == n
        assert got_ids[r, :n].tolist() == ids[r][mask[r]].tolist() and (got_ids[r, n:] == 7).all()
        assert got_dist[r, :n].tolist() == dist[r][mask[r]].tolist() and (got_dist[r, n:] == 7).all()
