CREATE EXTERNAL TABLE IF NOT EXISTS `contacts_contacts_events` (
  `sequence` bigint,
  `id` string,
  `eventtype` string,
  `entityid` string,
  `entityversion` bigint,
  `datetime` timestamp,
  `username` string,
  `useremail` string,
  `correlationid` string,
  `sourcesystem` string,
  `olddata` string,
  `newdata` string,
  `state_id` string,
  `state_residentid` bigint,
  `state_firstname` string,
  `state_lastname` string,
  `state_contactinformation` string,
  `state_version` bigint,
  `state_createdat` timestamp,
  `state_updatedat` timestamp
)
PARTITIONED BY (`import_year` string, `import_month` string, `import_day` string, `import_date` string)
STORED AS PARQUET
LOCATION 's3://council-lake/raw/contacts/contacts/events/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.import_date.type' = 'date',
  'projection.import_date.format' = 'yyyyMMdd',
  'projection.import_date.range' = '20200101,NOW',
  'projection.import_date.interval' = '1',
  'projection.import_date.interval.unit' = 'DAYS',
  'projection.import_year.type' = 'integer',
  'projection.import_year.range' = '2020,2099',
  'projection.import_month.type' = 'integer',
  'projection.import_month.range' = '1,12',
  'projection.import_month.digits' = '2',
  'projection.import_day.type' = 'integer',
  'projection.import_day.range' = '1,31',
  'projection.import_day.digits' = '2',
  'storage.location.template' = 's3://council-lake/raw/contacts/contacts/events/import_year=${import_year}/import_month=${import_month}/import_day=${import_day}/import_date=${import_date}/',
  'parquet.compression' = 'ZSTD'
);

CREATE EXTERNAL TABLE IF NOT EXISTS `contacts_contacts_snapshot` (
  `id` string,
  `residentid` bigint,
  `firstname` string,
  `lastname` string,
  `contactinformation` string,
  `version` bigint,
  `createdat` timestamp,
  `updatedat` timestamp
)
PARTITIONED BY (`import_date` string)
STORED AS PARQUET
LOCATION 's3://council-lake/raw/contacts/contacts/snapshot/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.import_date.type' = 'date',
  'projection.import_date.format' = 'yyyyMMdd',
  'projection.import_date.range' = '20200101,NOW',
  'projection.import_date.interval' = '1',
  'projection.import_date.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://council-lake/raw/contacts/contacts/snapshot/import_date=${import_date}/',
  'parquet.compression' = 'ZSTD'
);

CREATE EXTERNAL TABLE IF NOT EXISTS `residents_residents_events` (
  `sequence` bigint,
  `id` string,
  `eventtype` string,
  `entityid` string,
  `entityversion` bigint,
  `datetime` timestamp,
  `username` string,
  `useremail` string,
  `correlationid` string,
  `sourcesystem` string,
  `olddata` string,
  `newdata` string,
  `state_mosaicid` bigint,
  `state_title` string,
  `state_firstname` string,
  `state_lastname` string,
  `state_othernames` string,
  `state_dateofbirth` date,
  `state_dateofdeath` date,
  `state_gender` string,
  `state_nhsnumber` string,
  `state_restricted` boolean,
  `state_nationality` string,
  `state_firstlanguage` string,
  `state_agecontext` string,
  `state_emailaddress` string,
  `state_preferredmethodofcontact` string,
  `state_uprn` string,
  `state_phonenumbers` string,
  `state_addresses` string,
  `state_version` bigint,
  `state_createdat` timestamp,
  `state_updatedat` timestamp
)
PARTITIONED BY (`import_year` string, `import_month` string, `import_day` string, `import_date` string)
STORED AS PARQUET
LOCATION 's3://council-lake/raw/residents/residents/events/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.import_date.type' = 'date',
  'projection.import_date.format' = 'yyyyMMdd',
  'projection.import_date.range' = '20200101,NOW',
  'projection.import_date.interval' = '1',
  'projection.import_date.interval.unit' = 'DAYS',
  'projection.import_year.type' = 'integer',
  'projection.import_year.range' = '2020,2099',
  'projection.import_month.type' = 'integer',
  'projection.import_month.range' = '1,12',
  'projection.import_month.digits' = '2',
  'projection.import_day.type' = 'integer',
  'projection.import_day.range' = '1,31',
  'projection.import_day.digits' = '2',
  'storage.location.template' = 's3://council-lake/raw/residents/residents/events/import_year=${import_year}/import_month=${import_month}/import_day=${import_day}/import_date=${import_date}/',
  'parquet.compression' = 'ZSTD'
);

CREATE EXTERNAL TABLE IF NOT EXISTS `residents_residents_snapshot` (
  `mosaicid` bigint,
  `title` string,
  `firstname` string,
  `lastname` string,
  `othernames` string,
  `dateofbirth` date,
  `dateofdeath` date,
  `gender` string,
  `nhsnumber` string,
  `restricted` boolean,
  `nationality` string,
  `firstlanguage` string,
  `agecontext` string,
  `emailaddress` string,
  `preferredmethodofcontact` string,
  `uprn` string,
  `phonenumbers` string,
  `addresses` string,
  `version` bigint,
  `createdat` timestamp,
  `updatedat` timestamp
)
PARTITIONED BY (`import_date` string)
STORED AS PARQUET
LOCATION 's3://council-lake/raw/residents/residents/snapshot/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.import_date.type' = 'date',
  'projection.import_date.format' = 'yyyyMMdd',
  'projection.import_date.range' = '20200101,NOW',
  'projection.import_date.interval' = '1',
  'projection.import_date.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://council-lake/raw/residents/residents/snapshot/import_date=${import_date}/',
  'parquet.compression' = 'ZSTD'
);

CREATE EXTERNAL TABLE IF NOT EXISTS `special_residents_residents_events` (
  `sequence` bigint,
  `id` string,
  `eventtype` string,
  `entityid` string,
  `entityversion` bigint,
  `datetime` timestamp,
  `username` string,
  `useremail` string,
  `correlationid` string,
  `sourcesystem` string,
  `olddata` string,
  `newdata` string,
  `state_mosaicid` bigint,
  `state_ethnicity` string,
  `state_religion` string,
  `state_version` bigint,
  `state_createdat` timestamp,
  `state_updatedat` timestamp
)
PARTITIONED BY (`import_year` string, `import_month` string, `import_day` string, `import_date` string)
STORED AS PARQUET
LOCATION 's3://council-lake/raw/_special/residents/residents/events/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.import_date.type' = 'date',
  'projection.import_date.format' = 'yyyyMMdd',
  'projection.import_date.range' = '20200101,NOW',
  'projection.import_date.interval' = '1',
  'projection.import_date.interval.unit' = 'DAYS',
  'projection.import_year.type' = 'integer',
  'projection.import_year.range' = '2020,2099',
  'projection.import_month.type' = 'integer',
  'projection.import_month.range' = '1,12',
  'projection.import_month.digits' = '2',
  'projection.import_day.type' = 'integer',
  'projection.import_day.range' = '1,31',
  'projection.import_day.digits' = '2',
  'storage.location.template' = 's3://council-lake/raw/_special/residents/residents/events/import_year=${import_year}/import_month=${import_month}/import_day=${import_day}/import_date=${import_date}/',
  'parquet.compression' = 'ZSTD'
);

CREATE EXTERNAL TABLE IF NOT EXISTS `special_residents_residents_snapshot` (
  `mosaicid` bigint,
  `ethnicity` string,
  `religion` string,
  `version` bigint,
  `createdat` timestamp,
  `updatedat` timestamp
)
PARTITIONED BY (`import_date` string)
STORED AS PARQUET
LOCATION 's3://council-lake/raw/_special/residents/residents/snapshot/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.import_date.type' = 'date',
  'projection.import_date.format' = 'yyyyMMdd',
  'projection.import_date.range' = '20200101,NOW',
  'projection.import_date.interval' = '1',
  'projection.import_date.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://council-lake/raw/_special/residents/residents/snapshot/import_date=${import_date}/',
  'parquet.compression' = 'ZSTD'
);

