"""Tools around the server that serving itself never imports: the open-loop load generator (run_loadtest), the
end-to-end run (run_fullstack), drift calibration and headless Chromium. Their extra dependencies are the
`tools` extra (pip install 'p10-serving[tools]'); the serving image does not install it."""
