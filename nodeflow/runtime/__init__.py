"""The machine a run uses: devices and dtypes, memory, folders and settings, atomic writes."""
