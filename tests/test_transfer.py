"""Fast checks of what a Dask task carries: a submission folder as bounded data, the course version."""

from __future__ import annotations

import os
import shutil

import pytest
from hostile.minicourse import write_mini_course

from autograder.course import load_course
from autograder.grading.backends.dask import parse_target
from autograder.grading.transfer import FolderTooLarge, digest, pack_folder, unpack_folder
from autograder.grading.version import course_version, differences


def test_a_folder_travels_with_its_links_unfollowed(tmp_path):
    src = tmp_path / "alice" / "lab1"
    (src / "data").mkdir(parents=True)
    (src / "lab1.ipynb").write_bytes(b'{"cells": []}')
    (src / "data" / "x.bin").write_bytes(bytes(range(256)))
    (src / "empty").mkdir()
    os.symlink("/etc/shadow", src / "secret")  # a link is sent as its target, never read
    os.symlink("/etc", src / "etc")  # nor a linked folder walked
    os.mkfifo(src / "pipe")  # reading a fifo would block: left out
    packed = pack_folder(src)
    assert packed["links"] == {"secret": "/etc/shadow", "etc": "/etc"}
    assert sorted(packed["files"]) == ["data/x.bin", "lab1.ipynb"] and sorted(packed["dirs"]) == ["data", "empty"]
    dest = unpack_folder(packed, tmp_path / "copy")
    assert (dest / "data" / "x.bin").read_bytes() == bytes(range(256)) and (dest / "empty").is_dir()
    assert os.readlink(dest / "secret") == "/etc/shadow" and not (dest / "pipe").exists()
    assert digest(pack_folder(dest)) == digest(packed)


def test_a_folder_is_bounded(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 2048)
    with pytest.raises(FolderTooLarge, match="more than"):
        pack_folder(tmp_path, max_bytes=1024)
    for i in range(5):
        (tmp_path / f"f{i}").write_bytes(b"")
    with pytest.raises(FolderTooLarge, match="more than 3 files"):
        pack_folder(tmp_path, max_entries=3)


def test_unpack_stays_inside(tmp_path):
    for rel in ("../escape", "/etc/x", "a/../../b"):
        with pytest.raises(ValueError, match="outside the folder"):
            unpack_folder({"files": {rel: b""}, "links": {}, "dirs": []}, tmp_path / rel.replace("/", "_"))


def test_course_version_names_what_differs(tmp_path):
    a = load_course(write_mini_course(tmp_path / "a"))
    b_root = tmp_path / "b"
    shutil.copytree(tmp_path / "a", b_root)
    assert course_version(load_course(b_root))["all"] == course_version(a)["all"]
    c_root = tmp_path / "c"
    shutil.copytree(tmp_path / "a", c_root)
    yml = c_root / "course.yml"
    yml.write_text(yml.read_text().replace("seed: 1234", "seed: 1235"))
    assert differences(course_version(load_course(c_root)), course_version(a)) == ["course.yml"]


def test_dask_targets():
    assert parse_target("local") == ("local", None)
    assert parse_target("local:3") == ("local", 3)
    assert parse_target("tcp://10.0.0.1:8786") == ("tcp://10.0.0.1:8786", None)
    for bad in ("local:0", "local:x", "scheduler"):
        with pytest.raises(ValueError, match="--dask"):
            parse_target(bad)
