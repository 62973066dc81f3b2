"""The name -> class registry helper that the data bases and transformations share."""

from __future__ import annotations

import pytest

from n2q.data.databases import load_all
from n2q.data.transforms import load_all as load_all_transformations
from n2q.registry import registrar


def test_registrar_stores_the_class_and_names_it() -> None:
    table: dict[str, type] = {}
    register = registrar(table, "TYPE")

    @register("Alpha")
    class A:
        pass

    assert table == {"Alpha": A} and A.TYPE == "Alpha"


def test_registrar_refuses_a_second_class_under_one_name() -> None:
    table: dict[str, type] = {}
    register = registrar(table, "kind")
    register("Beta")(type("B1", (), {}))
    with pytest.raises(ValueError, match="'Beta' is registered twice: .*B1 and .*B2"):
        register("Beta")(type("B2", (), {}))


def test_data_registries_name_their_classes() -> None:
    # (the name lists themselves are checked in test_data_databases / test_data_transforms)
    for table in (load_all(), load_all_transformations()):
        assert table and all(cls.TYPE == name for name, cls in table.items())
