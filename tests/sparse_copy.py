"""Copy a store as it lies on disk. Qdrant's files are mostly holes (32 MiB write-ahead logs,
vector chunks and payload pages made by truncating), and a plain copy writes the zeros out:
a 7 MB test store becomes 340 MB, and the crash tests' copies filled a CI disk."""
import os
import shutil

CHUNK = 1 << 20


def copy_file(src, dst, *, follow_symlinks=True):
    """Copy the data regions only; where the file system cannot tell holes, all of it."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        size = os.fstat(fi.fileno()).st_size
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fi.fileno(), pos, os.SEEK_DATA)
            except OSError:  # ENXIO: nothing but a hole from pos to the end
                break
            end = os.lseek(fi.fileno(), start, os.SEEK_HOLE)
            fi.seek(start)
            fo.seek(start)
            while start < end:
                block = fi.read(min(CHUNK, end - start))
                fo.write(block)
                start += len(block)
            pos = end
        fo.truncate(size)
    shutil.copystat(src, dst)
    return dst


def copy_store(src, dst):
    shutil.copytree(src, dst, copy_function=copy_file)
    return dst
