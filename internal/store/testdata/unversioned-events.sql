-- events.db as the release before schema versions (commit e03dece) writes it: every
-- owner's tables, user_version 0, no schema_versions; a few rows. sqlite3 events.db .dump
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE events (
		tenant   TEXT NOT NULL,
		device   TEXT NOT NULL,
		name     TEXT NOT NULL,
		time     INTEGER NOT NULL,
		data     BLOB NOT NULL,
		received INTEGER NOT NULL,
		UNIQUE (device, name, time, data)
	);
INSERT INTO events VALUES('acme','acme:pump-1','overheat',1764000000000,X'7b7d',1764000000100);
CREATE TABLE text_values (
		tenant   TEXT NOT NULL,
		device   TEXT NOT NULL,
		property TEXT NOT NULL,
		time     INTEGER NOT NULL,
		kind     TEXT NOT NULL,
		value    TEXT NOT NULL,
		PRIMARY KEY (device, property, time)
	);
INSERT INTO text_values VALUES('acme','acme:pump-1','mode',1764000000000,'string','auto');
CREATE INDEX events_by_tenant_time ON events(tenant, time);
COMMIT;
