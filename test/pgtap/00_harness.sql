CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(1);
SELECT ok(true, 'harness works');
SELECT * FROM finish();
