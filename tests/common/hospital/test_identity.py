"""A hospital's pseudonym, image-key salt and reader pseudonyms, kept in its state."""

import json

from common.hospital.identity import Identity


def test_pseudonym_and_salt_are_made_once_and_kept(tmp_path):
    a = Identity(tmp_path / "identity.json")
    name, salt = a.pseudonym, a.salt
    assert name.startswith("site-") and len(salt) == 32
    b = Identity(tmp_path / "identity.json")  # another process, later
    assert (b.pseudonym, b.salt) == (name, salt)
    other = Identity(tmp_path / "elsewhere" / "identity.json")
    assert other.pseudonym != name and other.salt != salt


def test_readers_become_role_pseudonyms_that_never_change(tmp_path):
    identity = Identity(tmp_path / "identity.json")
    first = identity.readers([("Dr Smith", "senior"), ("Dr Jones", "junior"), ("Dr Wu", "junior")])
    assert sorted(first.values()) == ["junior-1", "junior-2", "senior-1"]
    assert first["Dr Smith"] == "senior-1"
    # a new reader later takes the next number; the others keep theirs
    later = identity.readers([("Dr Abel", "junior"), ("Dr Jones", "junior")])
    assert later["Dr Jones"] == first["Dr Jones"] and later["Dr Abel"] == "junior-3"
    stored = json.loads((tmp_path / "identity.json").read_text())["readers"]
    assert stored == later
