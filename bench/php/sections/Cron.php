<?php

declare(strict_types=1);

namespace Ebats\Bench\Sections;

use Ebats\Bench\Context;
use Ebats\Bench\Report;
use Ebats\Bench\Results;
use Ebats\Bench\Section;
use Ebats\Tests\Lib\Process;

/**
 * Periodic firings: a schedule firing every second with two Schedulers; a firing's lateness (its publish time
 * minus its tick, from the record each firing carries) and the time from a kill -9 of the leader to the other
 * Scheduler leading.
 */
final class Cron implements Section
{
    public function name(): string
    {
        return 'cron';
    }

    public function run(Context $ctx): void
    {
        $c = $ctx->settings;
        $secs = (int) $c['lat_secs'];
        for ($rep = 1; $rep <= $c['reps']; $rep++) {
            $ctx->attempt('cron', function () use ($ctx, $secs, $rep) {
                $probe = "{$ctx->prefix}.cron_probe";
                $ch = $ctx->admin->channel();
                $ch->exchange_declare("{$ctx->prefix}.cron.fire", 'fanout', false, true, false);
                $ch->queue_declare($probe, false, false, false, false);
                $ch->queue_bind($probe, "{$ctx->prefix}.cron.fire");
                $ch->queue_purge($probe);
                $logs = ["{$ctx->tmp}/cron-a-$rep.log", "{$ctx->tmp}/cron-b-$rep.log"];
                $procs = [];
                try {
                    foreach ($logs as $log) {
                        @unlink($log);
                        $procs[] = $ctx->spawn($ctx->phpCmd('cron_scheduler.php', []), $log);
                    }
                    $leads = static fn (string $log): bool => str_contains((string) @file_get_contents($log), 'cron: took over the leadership');
                    $leader = Process::until(static fn () => $leads($logs[0]) ? 0 : ($leads($logs[1]) ? 1 : null), 20, 0.01);
                    if ($leader === null) {
                        throw new \RuntimeException('no Scheduler took the leadership in 20 s');
                    }
                    $ctx->admin->waitMessages($probe, $secs, $secs + 10);
                    $procs[$leader]->kill();
                    $killed = microtime(true);
                    $other = 1 - $leader;
                    if (Process::until(static fn () => $leads($logs[$other]) ?: null, 20, 0.002) === null) {
                        throw new \RuntimeException('the other Scheduler did not take over in 20 s');
                    }
                    $takeover = 1000.0 * (microtime(true) - $killed);
                    $before = $ctx->admin->queueInfo($probe)[0];
                    $ctx->admin->waitMessages($probe, $before + 3, 10);
                } finally {
                    foreach ($procs as $p) {
                        $ctx->stop($p);
                    }
                }
                $lateness = [];
                $late = 0;
                $ticks = [];
                while (($m = $ch->basic_get($probe, true)) !== null) {
                    $headers = $m->has('application_headers') ? $m->get('application_headers')->getNativeData() : [];
                    $r = json_decode((string) ($headers['x-ebats-cron'] ?? ''), true);
                    if (!is_array($r)) {
                        continue;
                    }
                    $ticks[] = $r['tick'];
                    if ($r['late']) {
                        $late++;
                        continue;
                    }
                    $lateness[] = (float) ($r['fired_at'] - $r['tick']);
                }
                $ch->queue_delete($probe);
                sort($lateness);
                $twice = count($ticks) - count(array_unique($ticks));
                $p50 = Results::pct($lateness, 50);
                $p99 = Results::pct($lateness, 99);
                $ctx->results->record('cron', ['p50' => $p50, 'p99' => $p99, 'max' => end($lateness), 'takeover' => $takeover, 'n' => count($ticks), 'late' => $late, 'twice' => $twice]);
                $ctx->note(sprintf('cron rep %d  %d firings (%d late, %d twice): lateness p50 %.0f ms  p99 %.0f ms  max %.0f ms; takeover after kill -9 %.0f ms',
                    $rep, count($ticks), $late, $twice, $p50, $p99, end($lateness), $takeover));
                if ($twice > 0) {
                    throw new \RuntimeException("$twice tick(s) fired twice");
                }
            });
        }
    }

    public function report(Context $ctx, Report $report): void
    {
        $res = $ctx->results;
        if (!$res->has('cron')) {
            return;
        }
        $report->line('6. Periodic firings: a schedule every second, two Schedulers; lateness = publish time minus tick (ms precision)');
        $report->row('', 'p50 ms', 'p99 ms', 'max ms');
        $report->row('tick → event published', $res->cell('cron', 'p50'), $res->cell('cron', 'p99'), $res->cell('cron', 'max'));
        $report->row('kill -9 of the leader → the other leads', $res->cell('cron', 'takeover'), '', '');
        $report->line();
    }

    public function targets(Context $ctx, Report $report): void
    {
        $res = $ctx->results;
        if (!$res->has('cron')) {
            return;
        }
        $p99 = $res->med('cron', 'p99');
        $report->target('cron: firing lateness p99 (ms), idle machine', $p99, 50.0, '<=', sprintf('%.0f ms', $p99));
    }
}
