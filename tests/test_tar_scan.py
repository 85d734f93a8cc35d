"""WebDataset shards read from their scanned headers (sources/tar_headers.py), the images
left for the decoder to read by offset, give exactly what tarfile's stream gives: the same
samples, labels, metadata, pixels and problems, for whole shards and for shards cut or
damaged anywhere."""
import io
import json
import tarfile

import pytest
from shard_files import png

from gmv_store.errors import BadInput
from gmv_store.sources import InputOptions, webdataset
from gmv_store.sources.tar_headers import scan


def outcome(items):
    """Each item as (source, label, meta, its pixels' bytes or its one-line error)."""
    out = []
    for it in items:
        try:
            got = it.load().tobytes()
        except BadInput as e:
            got = str(e)
        out.append((it.source, it.label, it.meta, got))
    return out


def both(path, opts=None):
    """The shard read from its scan (None where the scan leaves it to tarfile) and through tarfile."""
    opts = opts or InputOptions()
    found = scan(str(path))
    fast = outcome(webdataset._items_scanned(path, found.members, opts)) if found.whole else None
    return fast, outcome(webdataset._items_by_tarfile(path, opts))


def odd_shard(path, x):
    """Keys with .png/.cls/.json/.txt, a folder, a hidden file, a second .png in a sample, a
    key repeated later, an image that is no image, a sample without image, a long name."""
    def add(tar, name, data):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        folder = tarfile.TarInfo("d")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        add(tar, "a.png", png(x[0]))
        add(tar, "a.cls", b"3")
        add(tar, "a.json", json.dumps({"label": "three", "who": "lecun"}).encode())
        add(tar, ".hidden.png", png(x[1]))
        add(tar, "b.png", png(x[2]))
        add(tar, "b.png", png(x[3]))  # a second .png in one sample
        add(tar, "b.txt", b"a caption")
        add(tar, "c.png", b"not a png")
        add(tar, "c.cls", b"1")
        add(tar, "d/e.cls", b"5")  # no image
        add(tar, "a.png", png(x[4]))  # key a again, later
        add(tar, "f" * 120 + ".png", png(x[5]))
        add(tar, "g.png", png(x[6]))
        add(tar, "g.json", b"{not json")
    return path


def test_a_whole_shard_reads_as_through_tarfile(tmp_path, mnist_small):
    x = mnist_small[0]
    f = odd_shard(tmp_path / "odd.tar", x)
    fast, slow = both(f)
    assert fast == slow
    assert [s[0].split("#")[1] for s in fast] == ["a", "b", "b", "c", "d/e", "a", "f" * 120, "g"]
    assert fast[0][1:3] == ("3", {"label": "three", "who": "lecun"}) and fast[0][3] == x[0].tobytes()
    opts = InputOptions(label_column="who", image_column="png")
    assert both(f, opts)[0] == both(f, opts)[1]


def test_a_shard_cut_or_damaged_anywhere_is_read_as_through_tarfile(tmp_path, mnist_small):
    """The scan takes a shard only when it ends as it should; a cut or damaged one goes
    through tarfile, which says where it stopped reading and why."""
    x = mnist_small[0]
    f = odd_shard(tmp_path / "odd.tar", x)
    with tarfile.open(f) as tar:
        tar.getmembers()
        end_blocks = tar.offset  # where the end-of-archive zero blocks start
    whole = f.read_bytes()
    cut = tmp_path / "cut.tar"
    reader = webdataset.WebDatasetReader()
    for end in list(range(0, len(whole), 97)) + [end_blocks, end_blocks + 511, end_blocks + 512]:
        cut.write_bytes(whole[:end])
        found = scan(str(cut))
        assert found.whole == (end >= end_blocks + 512), end
        try:
            slow = outcome(webdataset._items_by_tarfile(cut, InputOptions()))
        except BadInput as e:  # tarfile refuses the file from its first header: so does the reader
            with pytest.raises(BadInput) as got:
                list(reader.items(cut, InputOptions()))
            assert str(got.value) == str(e)
            continue
        assert outcome(reader.items(cut, InputOptions())) == slow, end
        if found.whole:
            assert outcome(webdataset._items_scanned(cut, found.members, InputOptions())) == slow
    for _, data_at, _ in scan(str(f)).members[1::4]:  # a header's byte flipped: its checksum stops tarfile there
        bad = bytearray(whole)
        bad[data_at - 512 + 5] ^= 0x41
        cut.write_bytes(bytes(bad))
        assert not scan(str(cut)).whole
        assert outcome(reader.items(cut, InputOptions())) == outcome(webdataset._items_by_tarfile(cut, InputOptions()))


def test_members_too_large_are_refused_unread_as_through_tarfile(tmp_path, mnist_small, monkeypatch):
    monkeypatch.setattr(webdataset, "MAX_FILE_BYTES", 300)
    f = odd_shard(tmp_path / "odd.tar", mnist_small[0])
    fast, slow = both(f)
    assert fast == slow and any("-byte limit of one image file" in s[3] for s in fast)


def test_the_scan_checks_and_streams_headers_block_by_block(tmp_path, mnist_small, monkeypatch):
    """Headers are checked a block at a time (memory bounded by the block, not the shard): the
    same members as tarfile across blocks, and a bad header in a later block stops the scan
    there and marks the shard not whole."""
    from gmv_store.sources import tar_headers

    monkeypatch.setattr(tar_headers, "BLOCK", 3)
    f = odd_shard(tmp_path / "odd.tar", mnist_small[0])
    found = scan(str(f))
    assert found.whole and tar_headers.whole(str(f))
    assert found.members == list(tar_headers.members_by_tarfile(str(f))) == list(tar_headers.members(str(f)))
    bad = bytearray(f.read_bytes())
    bad[found.members[9][1] - 512 + 5] ^= 0x41  # the tenth member's own header, in the fourth block
    cut = tmp_path / "bad.tar"
    cut.write_bytes(bytes(bad))
    assert scan(str(cut)).members == found.members[:9] and not tar_headers.whole(str(cut))
    fast, slow = both(f)
    assert fast == slow
    monkeypatch.setattr(webdataset, "SCAN_HELD_BYTES", 0)  # a large shard: checked whole first, then streamed
    assert outcome(webdataset.WebDatasetReader().items(f, InputOptions())) == slow
    assert outcome(webdataset.WebDatasetReader().items(cut, InputOptions())) == \
        outcome(webdataset._items_by_tarfile(cut, InputOptions()))


def test_items_for_another_machine_carry_their_images_bytes(tmp_path, mnist_small):
    """`--ray` workers may not see the shard: `with_bytes` reads a sample's image into its item
    (the pixels the same after the shard is gone); other items pass unchanged, and an image the
    shard no longer holds becomes a one-line problem."""
    x = mnist_small[0]
    f = odd_shard(tmp_path / "odd.tar", x)
    items = list(webdataset.WebDatasetReader().items(f, InputOptions()))
    expected = outcome(items)
    carried = [webdataset.with_bytes(it) for it in items]
    f.rename(tmp_path / "gone.tar")
    assert outcome(carried) == expected and expected[0][3] == x[0].tobytes()
    assert webdataset.with_bytes(carried[0]) is carried[0]
    (tmp_path / "gone.tar").rename(f)
    f.write_bytes(f.read_bytes()[:2000])  # cut after the items were listed
    late = outcome([webdataset.with_bytes(it) for it in items])
    assert any(isinstance(r[3], str) and "truncated or corrupt inside this sample's image" in r[3] for r in late)
