CREATE TABLE IF NOT EXISTS contacts_contacts_events (
  "sequence" bigint,
  "id" varchar,
  "eventtype" varchar,
  "entityid" varchar,
  "entityversion" bigint,
  "datetime" timestamp(6),
  "username" varchar,
  "useremail" varchar,
  "correlationid" varchar,
  "sourcesystem" varchar,
  "olddata" varchar,
  "newdata" varchar,
  "state_id" varchar,
  "state_residentid" bigint,
  "state_firstname" varchar,
  "state_lastname" varchar,
  "state_contactinformation" varchar,
  "state_version" bigint,
  "state_createdat" timestamp(6),
  "state_updatedat" timestamp(6),
  "import_year" varchar,
  "import_month" varchar,
  "import_day" varchar,
  "import_date" varchar
)
WITH (
  format = 'PARQUET',
  external_location = 's3a://council-lake/raw/contacts/contacts/events/',
  partitioned_by = ARRAY['import_year', 'import_month', 'import_day', 'import_date']
);
CALL system.sync_partition_metadata(CURRENT_SCHEMA, 'contacts_contacts_events', 'FULL');

CREATE TABLE IF NOT EXISTS contacts_contacts_snapshot (
  "id" varchar,
  "residentid" bigint,
  "firstname" varchar,
  "lastname" varchar,
  "contactinformation" varchar,
  "version" bigint,
  "createdat" timestamp(6),
  "updatedat" timestamp(6),
  "import_date" varchar
)
WITH (
  format = 'PARQUET',
  external_location = 's3a://council-lake/raw/contacts/contacts/snapshot/',
  partitioned_by = ARRAY['import_date']
);
CALL system.sync_partition_metadata(CURRENT_SCHEMA, 'contacts_contacts_snapshot', 'FULL');

CREATE TABLE IF NOT EXISTS residents_residents_events (
  "sequence" bigint,
  "id" varchar,
  "eventtype" varchar,
  "entityid" varchar,
  "entityversion" bigint,
  "datetime" timestamp(6),
  "username" varchar,
  "useremail" varchar,
  "correlationid" varchar,
  "sourcesystem" varchar,
  "olddata" varchar,
  "newdata" varchar,
  "state_mosaicid" bigint,
  "state_title" varchar,
  "state_firstname" varchar,
  "state_lastname" varchar,
  "state_othernames" varchar,
  "state_dateofbirth" date,
  "state_dateofdeath" date,
  "state_gender" varchar,
  "state_nhsnumber" varchar,
  "state_restricted" boolean,
  "state_nationality" varchar,
  "state_firstlanguage" varchar,
  "state_agecontext" varchar,
  "state_emailaddress" varchar,
  "state_preferredmethodofcontact" varchar,
  "state_uprn" varchar,
  "state_phonenumbers" varchar,
  "state_addresses" varchar,
  "state_version" bigint,
  "state_createdat" timestamp(6),
  "state_updatedat" timestamp(6),
  "import_year" varchar,
  "import_month" varchar,
  "import_day" varchar,
  "import_date" varchar
)
WITH (
  format = 'PARQUET',
  external_location = 's3a://council-lake/raw/residents/residents/events/',
  partitioned_by = ARRAY['import_year', 'import_month', 'import_day', 'import_date']
);
CALL system.sync_partition_metadata(CURRENT_SCHEMA, 'residents_residents_events', 'FULL');

CREATE TABLE IF NOT EXISTS residents_residents_snapshot (
  "mosaicid" bigint,
  "title" varchar,
  "firstname" varchar,
  "lastname" varchar,
  "othernames" varchar,
  "dateofbirth" date,
  "dateofdeath" date,
  "gender" varchar,
  "nhsnumber" varchar,
  "restricted" boolean,
  "nationality" varchar,
  "firstlanguage" varchar,
  "agecontext" varchar,
  "emailaddress" varchar,
  "preferredmethodofcontact" varchar,
  "uprn" varchar,
  "phonenumbers" varchar,
  "addresses" varchar,
  "version" bigint,
  "createdat" timestamp(6),
  "updatedat" timestamp(6),
  "import_date" varchar
)
WITH (
  format = 'PARQUET',
  external_location = 's3a://council-lake/raw/residents/residents/snapshot/',
  partitioned_by = ARRAY['import_date']
);
CALL system.sync_partition_metadata(CURRENT_SCHEMA, 'residents_residents_snapshot', 'FULL');

CREATE TABLE IF NOT EXISTS special_residents_residents_events (
  "sequence" bigint,
  "id" varchar,
  "eventtype" varchar,
  "entityid" varchar,
  "entityversion" bigint,
  "datetime" timestamp(6),
  "username" varchar,
  "useremail" varchar,
  "correlationid" varchar,
  "sourcesystem" varchar,
  "olddata" varchar,
  "newdata" varchar,
  "state_mosaicid" bigint,
  "state_ethnicity" varchar,
  "state_religion" varchar,
  "state_version" bigint,
  "state_createdat" timestamp(6),
  "state_updatedat" timestamp(6),
  "import_year" varchar,
  "import_month" varchar,
  "import_day" varchar,
  "import_date" varchar
)
WITH (
  format = 'PARQUET',
  external_location = 's3a://council-lake/raw/_special/residents/residents/events/',
  partitioned_by = ARRAY['import_year', 'import_month', 'import_day', 'import_date']
);
CALL system.sync_partition_metadata(CURRENT_SCHEMA, 'special_residents_residents_events', 'FULL');

CREATE TABLE IF NOT EXISTS special_residents_residents_snapshot (
  "mosaicid" bigint,
  "ethnicity" varchar,
  "religion" varchar,
  "version" bigint,
  "createdat" timestamp(6),
  "updatedat" timestamp(6),
  "import_date" varchar
)
WITH (
  format = 'PARQUET',
  external_location = 's3a://council-lake/raw/_special/residents/residents/snapshot/',
  partitioned_by = ARRAY['import_date']
);
CALL system.sync_partition_metadata(CURRENT_SCHEMA, 'special_residents_residents_snapshot', 'FULL');

