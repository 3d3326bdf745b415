"""Data layer: schema, storage, dataset loaders, importer, snapshots and splits."""
