"""The core: PID 1 (or a child subreaper). One file per role:

  main.py        `svtree run`: signals first, the first compile, then the loop until the end
  loop.py        the one blocking point: a selector, a heap of deadlines, pending signals
  core.py        Core: the interface the rest of svtree uses, and the orchestration
  records.py     a service's record, its life with its monitor (one total table), views
  monitors.py    forking monitors, commands out, reports in, a monitor's end
  report_log.py  the table from a monitor's report to svtree's log events
  converge.py    the start order and the end of boot
  retire.py      a reload's retirements and replacements
  shutdown.py    the shutdown's phases (one total table), stop order, final sweep
  maincmd.py     the main command
  reaper.py      the one waitpid, each exit to the owner of its pid
  output.py      svtree's stdout and stderr, never blocking; service output in prefix mode
  control.py     the control socket (`svtree ctl`)
  reload.py      reloads: the watcher process, compile, diff, apply
  compiling.py   a compile in a helper child
  leftovers.py   ending what a dead monitor's service left behind, in a helper child
  helper.py      short-lived helper children PID 1 never waits for
"""
