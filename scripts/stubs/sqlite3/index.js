throw new Error(
  'sqlite3 is replaced by a stand-in in this workspace (see package.json "overrides"); flowcache uses better-sqlite3',
)
