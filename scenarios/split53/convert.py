"""The CLR authors' DCT / SKILL release -> the split53 layout, read from its sqlite database."""
from __future__ import annotations

from pathlib import Path

from clbench.errors import DataMissingError
from scenarios.split53.tasks import parse_tasks


def convert_release(release: Path, data_root: Path, tasks: str = "all", copy: bool = False) -> dict[str, dict[str, int]]:
    """Lay out the CLR authors' DCT / SKILL release as ``LAYOUT`` (symlinks, or copies).

    Reads the release's ``rolling_releases/database_2.sqlite`` as the official loader
    does: table ``files`` rows with ``problem=0`` of the task's ``dataset_id`` (our
    ``dct_id``), ``set`` 0 -> ``train/``, 1 (the split the paper evaluates on) ->
    ``test/``; the image is ``original_images/<dataset_name><path><filename>``. Class
    folders are the zero-padded ``class_id``; files are named by their hash. Returns
    the images written per task and split, and how many listed files were absent.
    """
    import shutil
    import sqlite3
    from contextlib import closing

    release, data_root = Path(release).expanduser(), Path(data_root).expanduser()
    database = release / "rolling_releases" / "database_2.sqlite"
    if not database.is_file():
        raise DataMissingError(f"no {database}: --release must be the folder where the authors' release was unzipped")
    written: dict[str, dict[str, int]] = {}
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        for task in parse_tasks(tasks):
            row = db.execute("SELECT dataset_name FROM datasets WHERE dataset_id=?", (task.dct_id,)).fetchone()
            if row is None:
                raise DataMissingError(f"{database} has no dataset_id {task.dct_id} (task {task.folder})")
            counts = written[task.folder] = {"train": 0, "test": 0, "absent": 0}
            for split, set_id in (("train", 0), ("test", 1)):
                rows = db.execute('SELECT hash, path, filename, class_id FROM files WHERE dataset_id=? AND problem=0 AND "set"=?',
                                  (task.dct_id, set_id)).fetchall()
                for digest, path, filename, class_id in rows:
                    source = Path(f"{release}/original_images/{row[0]}{path}{filename}")
                    if not source.is_file():
                        counts["absent"] += 1
                        continue
                    target = data_root / "split53" / task.folder / split / f"{int(class_id):04d}" / f"{digest}{Path(filename).suffix}"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if target.exists() or target.is_symlink():
                        target.unlink()
                    if copy:
                        shutil.copyfile(source, target)
                    else:
                        target.symlink_to(source)
                    counts[split] += 1
    return written
