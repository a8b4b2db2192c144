-- Step 12: the data scientists' console page shows the monitor's newest results (drift per feature, realized quality
-- per cohort, the loop's decision): aggregates per model version, no lead rows. The console's role reads them.
GRANT USAGE ON SCHEMA monitoring TO leadscore_console;
GRANT SELECT ON monitoring.results TO leadscore_console;
