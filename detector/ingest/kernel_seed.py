"""``python -m detector.ingest.kernel_seed [SEED_DIR]``: compile the ingestion kernel and ship it
with this installation, for users who cannot write into it (see :func:`detector.ingest.kernel.seed_dir`)."""

from detector.ingest.kernel import main

if __name__ == "__main__":
    main()
