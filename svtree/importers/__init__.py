"""`svtree import`: another supervisor's configuration -> a service tree on disk.

Like the compiler, this package knows nothing of processes: each source format is read
into data (`model.Conversion`: one `Service` per process to run, with its run script
text, its service.toml settings, its down flag, and `Note`s saying what did not carry
over), and `writer` turns that data into directories.

Modules: model (the values), script (run scripts: quoting, exec, redirections),
supervisord (INI files read the way supervisord reads them), procfile (honcho's and
foreman's Procfile and .env grammar), writer (the tree on disk, --dry-run, the table of
notes), command (`svtree import`).
"""
