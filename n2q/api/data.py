"""Data base, transformations and stimuli provider of the Python API.

``Database("MNIST_IDX", validation=0.1)`` is the ``[database]`` section, ``Provider(db, (32,
32, 1), batch_size=256)`` the ``[sp]`` section, each ``Transformation`` one ``[sp.*]`` section
(cached ones with :meth:`Provider.add_transformation`, on-the-fly ones with
:meth:`Provider.add_on_the_fly_transformation`). The data base is read on first use, by
``n2q.data`` itself, with the seed of :func:`n2q.seed`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from n2q.api.keys import KeySet, add_section, camel_keys, new_config, scratch_section
from n2q.errors import UserError, did_you_mean


class Database(KeySet):
    """``[database]``: ``Database("MNIST_IDX", data_path=..., validation=0.1)``. The type is
    an INI ``Type=`` name (``MNIST_IDX_Database``; the ``_Database`` suffix may be left out);
    the keywords are its keys. Key names are checked now, values when the data is read."""

    def __init__(self, type: str, **keys: Any) -> None:  # noqa: A002
        from n2q.data.databases import load_all

        types = load_all()
        name = type if type in types or f"{type}_Database" not in types else f"{type}_Database"
        super().__init__({"Type": name, **camel_keys(keys)})
        sec = scratch_section("database", self.keys())
        kind = sec.enum("Type", sorted(types))
        cls = types[kind]
        sec.check_keys((*cls.COMMON_KEYS, *cls.KEYS), f"a {kind}")
        self.type = kind


class Transformation(KeySet):
    """One transformation: ``Transformation("Rescale", width=32, height=32)``,
    ``Transformation("Flip", random_horizontal_flip=True, apply_to="LearnOnly")``. The type
    is an INI ``Type=`` name (the ``Transformation`` suffix may be left out)."""

    def __init__(self, type: str, **keys: Any) -> None:  # noqa: A002
        from n2q.data.transforms import load_all, make_transformation

        types = load_all()
        full = f"{type}Transformation"
        name = full if type not in types and full in types else type
        super().__init__({"Type": name, **camel_keys(keys)})
        make_transformation(scratch_section("transformation", self.keys()))
        self.type = name


Size = Sequence[int]


class Provider:
    """``[sp]``: a data base, the stimulus size (width, height[, channels]), the batch size
    and the transformation chains. ``stimuli`` is the n2q StimuliProvider (built on first
    use); :meth:`loader` gives the batches of a partition, for plain PyTorch loops."""

    def __init__(self, database: Database, size: Size, *, batch_size: int = 1,
                 seed: int | None = None, **keys: Any) -> None:
        if not isinstance(database, Database):
            raise UserError(f"Provider(database=...) needs an n2q.Database, got "
                            f"{type(database).__name__}")
        dims = [int(v) for v in size]
        if len(dims) not in (2, 3):
            raise UserError(f"Provider(size={list(size)}): give (width, height) or "
                            "(width, height, channels)")
        w, h, c = (*dims, 1)[:3]
        self.database = database
        self.seed = seed
        self._keys = {"SizeX": str(w), "SizeY": str(h), "NbChannels": str(c),
                      "BatchSize": str(batch_size), **camel_keys(keys)}
        self._chain: list[tuple[str, Transformation]] = []
        self._cfg: Any = None
        self._stimuli: Any = None
        self._check()

    def _check(self) -> None:
        from n2q.data.provider import SP_KEYS, StimuliProvider

        sec = scratch_section("sp", self._keys)
        sec.check_keys(SP_KEYS, "the stimuli provider")
        StimuliProvider._read_size(sec)
        if sec.int("BatchSize") <= 0:
            raise sec.error("BatchSize", f"{sec.int('BatchSize')} must be at least 1")

    @classmethod
    def from_config(cls, cfg: Any, name: str | None = None, seed: int | None = None
                    ) -> Provider:
        """The provider of an INI Config (``[sp]``, or ``[env]`` without ``[sp]``)."""
        self = cls.__new__(cls)
        self.database, self.seed, self._keys, self._chain = None, seed, {}, []
        self._cfg = cfg
        self.name = name or ("env" if "sp" not in cfg and "env" in cfg else "sp")
        self._stimuli = None
        return self

    # -- transformations -------------------------------------------------------------------
    def add_transformation(self, t: Transformation | Iterable[Transformation]) -> None:
        """Cached transformations (``[sp.Transformation-N]``), in order; a list adds several
        (the seed's ``Composite``)."""
        self._add("Transformation", t)

    def add_on_the_fly_transformation(self, t: Transformation | Iterable[Transformation]
                                      ) -> None:
        """Transformations redrawn at each epoch (``[sp.OnTheFlyTransformation-N]``)."""
        self._add("OnTheFlyTransformation", t)

    def _add(self, kind: str, t: Transformation | Iterable[Transformation]) -> None:
        if self._cfg is not None and self.database is None:
            raise UserError("this provider comes from an INI file: add the transformation "
                            "to its [sp.*] sections")
        items = [t] if isinstance(t, Transformation) else list(t)
        for item in items:
            if not isinstance(item, Transformation):
                raise UserError(f"add_{kind.lower()}: expected n2q.Transformation objects, "
                                f"got {type(item).__name__}")
            self._chain.append((kind, item))
        self._stimuli = None

    # -- INI sections ----------------------------------------------------------------------
    def sections(self) -> list[tuple[str, dict[str, str]]]:
        """(name, keys) of ``[database]``, ``[sp]`` and ``[sp.*]`` in file order."""
        if self._cfg is not None:
            keep = [s for s in self._cfg.sections
                    if s.name in ("database", self.name) or s.name.startswith(self.name + ".")]
            return [(s.name, {k: e.value for k, e in s.entries.items()}) for s in keep]
        out = [("database", self.database.keys()), ("sp", dict(self._keys))]
        out += [(f"sp.{kind}-{i + 1}", t.keys()) for i, (kind, t) in enumerate(self._chain)]
        return out

    @property
    def name(self) -> str:
        return getattr(self, "_name", "sp")

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def config(self) -> Any:
        """An in-memory Config holding these sections only."""
        if self._cfg is not None:
            return self._cfg
        cfg = new_config()
        for name, keys in self.sections():
            add_section(cfg, name, keys)
        return cfg

    # -- the data --------------------------------------------------------------------------
    @property
    def stimuli(self) -> Any:
        """n2q's StimuliProvider (``n2q.data``), built on first use with the seed given here
        or, by default, that of :func:`n2q.seed`."""
        if self._stimuli is None:
            from n2q.api.run import current_seed
            from n2q.data import make_provider

            seed = self.seed if self.seed is not None else current_seed()
            self._stimuli = make_provider(self.config(), seed, self.name)
        return self._stimuli

    @property
    def size(self) -> tuple[int, int, int]:
        """(C, H, W) of a stimulus, without reading the data."""
        from n2q.data.provider import StimuliProvider

        return StimuliProvider._read_size(self.config()[self.name])

    @property
    def batch_size(self) -> int:
        return int(self.config()[self.name].int("BatchSize", 1))

    def loader(self, partition: str = "Learn", *, shuffle: bool | None = None,
               epoch: int = 0, **options: Any) -> Any:
        """Batches ``(x [B, C, H, W] float32, label [B] int64)`` of a partition ("Learn",
        "Validation", "Test"), iterable like a DataLoader; Learn is shuffled by default,
        with an order drawn from (seed, epoch)."""
        from n2q.data.partition import PARTITIONS

        if partition not in PARTITIONS:
            raise UserError(f"unknown partition '{partition}'{did_you_mean(partition, PARTITIONS)}"
                            f"; valid: {', '.join(PARTITIONS)}")
        if shuffle is None:
            shuffle = partition == "Learn"
        return self.stimuli.loader(partition, shuffle=shuffle, epoch=epoch, **options)

    def partition_sizes(self) -> dict[str, int]:
        return self.stimuli.partition_sizes()

    @property
    def labels(self) -> list[str]:
        return self.stimuli.labels

    def __repr__(self) -> str:
        return "Provider(" + ", ".join(
            f"[{n}] " + " ".join(f"{k}={v}" for k, v in keys.items())
            for n, keys in self.sections()) + ")"
