-- wanwu.db as the release before schema versions (commit e03dece) writes it: every
-- owner's tables, user_version 0, no schema_versions; a few rows. sqlite3 wanwu.db .dump
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE meta (
		key   TEXT PRIMARY KEY,
		value TEXT NOT NULL
	);
INSERT INTO meta VALUES('deployment_id','fixture-deployment');
CREATE TABLE tenants (
		name       TEXT PRIMARY KEY,
		title      TEXT NOT NULL DEFAULT '',
		prefix     TEXT NOT NULL,
		prefix_set INTEGER NOT NULL DEFAULT 0,
		created_at INTEGER NOT NULL
	);
INSERT INTO tenants VALUES('acme','Acme','fd12:3456:789a::/48',0,1764000000000);
CREATE TABLE subnets (
		tenant    TEXT NOT NULL REFERENCES tenants(name),
		key       TEXT NOT NULL,
		subnet_id INTEGER NOT NULL,
		attempt   INTEGER NOT NULL,
		PRIMARY KEY (tenant, key),
		UNIQUE (tenant, subnet_id)
	);
CREATE TABLE models (
		id         TEXT NOT NULL,
		version    TEXT NOT NULL,
		tenant     TEXT NOT NULL REFERENCES tenants(name),
		doc        BLOB NOT NULL,
		created_at INTEGER NOT NULL,
		PRIMARY KEY (id, version)
	);
CREATE TABLE objects (
		code          TEXT PRIMARY KEY,
		tenant        TEXT NOT NULL REFERENCES tenants(name),
		kind          TEXT NOT NULL,
		status        TEXT NOT NULL,
		status_reason TEXT NOT NULL DEFAULT '',
		path          TEXT NOT NULL DEFAULT '',
		tags          TEXT NOT NULL DEFAULT '{}',
		edge          TEXT NOT NULL DEFAULT '',
		model_id      TEXT NOT NULL DEFAULT '',
		model_version TEXT NOT NULL DEFAULT '',
		number        TEXT NOT NULL UNIQUE,
		subnet_key    TEXT NOT NULL,
		iid_attempt   INTEGER NOT NULL,
		created_at    INTEGER NOT NULL,
		updated_at    INTEGER NOT NULL
	);
INSERT INTO objects VALUES('acme:pump-1','acme','device','active','','site-a','{}','','','','fd12:3456:789a:1::1','site:site-a',0,1764000000000,1764000000000);
CREATE TABLE object_keys (
		id              INTEGER PRIMARY KEY AUTOINCREMENT,
		code            TEXT NOT NULL REFERENCES objects(code),
		did             TEXT NOT NULL UNIQUE,
		alg             TEXT NOT NULL,
		fingerprint     TEXT NOT NULL,
		status          TEXT NOT NULL,
		created_at      INTEGER NOT NULL,
		retire_at       INTEGER NOT NULL DEFAULT 0,
		revoked_at      INTEGER NOT NULL DEFAULT 0,
		cert_serial     TEXT NOT NULL UNIQUE,
		cert_pem        TEXT NOT NULL,
		cert_not_after  INTEGER NOT NULL,
		credential      TEXT NOT NULL
	);
CREATE TABLE tokens (
		id         TEXT PRIMARY KEY,
		name       TEXT NOT NULL UNIQUE,
		role       TEXT NOT NULL,
		tenant     TEXT NOT NULL DEFAULT '',
		hash       BLOB NOT NULL UNIQUE,
		created_at INTEGER NOT NULL,
		revoked_at INTEGER NOT NULL DEFAULT 0
	);
CREATE TABLE claims (
		id            TEXT PRIMARY KEY,
		hash          BLOB NOT NULL UNIQUE,
		tenant        TEXT NOT NULL REFERENCES tenants(name),
		name          TEXT NOT NULL DEFAULT '',
		max_uses      INTEGER NOT NULL,
		uses          INTEGER NOT NULL DEFAULT 0,
		expires_at    INTEGER NOT NULL,
		template      TEXT NOT NULL,
		created_at    INTEGER NOT NULL,
		revoked_at    INTEGER NOT NULL DEFAULT 0
	);
CREATE TABLE audit_leaves (
		idx  INTEGER PRIMARY KEY,
		leaf BLOB NOT NULL
	);
CREATE TABLE audit_nodes (
		level INTEGER NOT NULL,
		idx   INTEGER NOT NULL,
		hash  BLOB NOT NULL,
		PRIMARY KEY (level, idx)
	) WITHOUT ROWID;
CREATE TABLE audit_state (
		id    INTEGER PRIMARY KEY CHECK (id = 0),
		size  INTEGER NOT NULL,
		range BLOB NOT NULL
	);
INSERT INTO audit_state VALUES(0,0,X'');
CREATE TABLE audit_heads (
		size       INTEGER PRIMARY KEY,
		root       BLOB NOT NULL,
		note       BLOB NOT NULL,
		created_ms INTEGER NOT NULL
	);
CREATE TABLE twins (
		code             TEXT PRIMARY KEY,
		tenant           TEXT NOT NULL,
		desired          TEXT NOT NULL DEFAULT '{}',
		reported         TEXT NOT NULL DEFAULT '{}',
		desired_meta     TEXT NOT NULL DEFAULT '{}',
		reported_meta    TEXT NOT NULL DEFAULT '{}',
		version          INTEGER NOT NULL DEFAULT 0,
		reported_version INTEGER NOT NULL DEFAULT 0,
		updated_at       INTEGER NOT NULL
	);
INSERT INTO twins VALUES('acme:pump-1','acme','{"rpm":1200}','{"rpm":1100}','{}','{}',1,1,1764000000000);
CREATE TABLE commands (
		id                TEXT PRIMARY KEY,
		code              TEXT NOT NULL,
		tenant            TEXT NOT NULL,
		seq               INTEGER NOT NULL,
		action            TEXT NOT NULL,
		args              BLOB NOT NULL,
		status            TEXT NOT NULL,
		attempts          INTEGER NOT NULL DEFAULT 0,
		reason            TEXT NOT NULL DEFAULT '',
		output            BLOB,
		actor             TEXT NOT NULL,
		created_at        INTEGER NOT NULL,
		expires_at        INTEGER NOT NULL,
		result_timeout_ms INTEGER NOT NULL,
		delivered_at      INTEGER NOT NULL DEFAULT 0,
		done_at           INTEGER NOT NULL DEFAULT 0,
		next_at           INTEGER NOT NULL DEFAULT 0,
		due_at            INTEGER NOT NULL DEFAULT 0,
		UNIQUE (code, seq)
	);
INSERT INTO commands VALUES('c1','acme:pump-1','acme',1,'reboot',X'7b7d','queued',0,'',NULL,'admin',1764000000000,1764086400000,30000,0,0,0,0);
CREATE TABLE command_events (
		seq          INTEGER PRIMARY KEY AUTOINCREMENT,
		command_id   TEXT NOT NULL REFERENCES commands(id),
		kind         TEXT NOT NULL,
		time         INTEGER NOT NULL,
		status       TEXT NOT NULL,
		attempts     INTEGER NOT NULL,
		reason       TEXT NOT NULL DEFAULT '',
		output       BLOB,
		delivered_at INTEGER NOT NULL DEFAULT 0,
		done_at      INTEGER NOT NULL DEFAULT 0,
		data         BLOB
	);
INSERT INTO command_events VALUES(1,'c1','issued',1764000000000,'queued',0,'',NULL,0,0,NULL);
DELETE FROM sqlite_sequence;
INSERT INTO sqlite_sequence VALUES('command_events',1);
CREATE INDEX objects_by_tenant_path ON objects(tenant, path);
CREATE INDEX object_keys_by_code ON object_keys(code);
CREATE INDEX twins_by_tenant ON twins(tenant);
CREATE INDEX commands_queued ON commands(code, seq) WHERE status = 'queued';
CREATE INDEX commands_due ON commands(due_at) WHERE status IN ('queued', 'delivered');
CREATE INDEX commands_by_time ON commands(created_at);
CREATE INDEX command_events_by_command ON command_events(command_id, seq);
COMMIT;
