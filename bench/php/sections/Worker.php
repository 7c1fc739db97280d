<?php

declare(strict_types=1);

namespace Ebats\Bench\Sections;

use Ebats\Bench\Context;
use Ebats\Bench\Report;
use Ebats\Bench\Results;
use Ebats\Bench\Section;
use Ebats\Bench\Workers;

/** Worker throughput on N waiting no-op tasks, against bare consume-and-ack loops of the other clients. */
final class Worker implements Section
{
    public function name(): string
    {
        return 'worker';
    }

    /**
     * Prefetch 0 is the Worker's default (setPrefetch() not called: adapted to the tasks' durations).
     *
     * @return array<string,array{0:string,1:string,2:int,3:int}> key => [label, kind, processes, prefetch]
     */
    private static function rows(): array
    {
        $rows = [];
        foreach ([1, 100, 0] as $pf) {
            $p = $pf ?: 'def';
            foreach ([1, 2] as $procs) {
                $rows["wk.e2e.p$p.w$procs"] = ["events → Scheduler → Worker, $procs process" . ($procs > 1 ? 'es' : ''), 'e2e', $procs, $pf];
            }
            if ($pf === 100) {
                $rows['wk.grouped.p100.w1'] = ['events → Scheduler → Worker, 1 process, each event a group with a follow-up', 'grouped', 1, $pf];
                $rows['wk.grouped.quiet.p100.w1'] = ['events → Scheduler → Worker, 1 process, each event a group, follow-up on failure only (none published)', 'grouped.quiet', 1, $pf];
                $f = self::FANOUT;
                $rows['wk.fanout.p100.w1'] = ["events of $f tasks each → Scheduler → Worker, 1 process (tasks/s)", 'fanout', 1, $pf];
                $rows['wk.fanout.grouped.p100.w1'] = ["events of $f tasks each → Scheduler → Worker, 1 process, each event's tasks a group with a follow-up (tasks/s)", 'fanout.grouped', 1, $pf];
                $rows['wk.fanout.grouped.quiet.p100.w1'] = ["events of $f tasks each → Scheduler → Worker, 1 process, each event's tasks a group, follow-up on failure only (none published; tasks/s)", 'fanout.grouped.quiet', 1, $pf];
                $rows['wk.hop.p100.lapin'] = ['lapin (Rust) two-hop: consume A, publish confirmed to B, ack', 'hop', 1, $pf];
            }
            foreach ([1, 2] as $procs) {
                $rows["wk.tasks.p$p.w$procs"] = ["tasks → Worker, $procs process" . ($procs > 1 ? 'es' : ''), 'worker', $procs, $pf];
            }
            if ($pf === 0) {
                continue;
            }
            $rows["wk.tasks.p$pf.w1.metrics"] = ['tasks → Worker, 1 process, metrics scraped', 'metrics', 1, $pf];
            $rows["wk.tasks.p$pf.w1.history"] = ['tasks → Worker, 1 process, metrics scraped + history on', 'history', 1, $pf];
            $rows["wk.tasks.p$pf.w1.ratefree"] = ['tasks → Worker, 1 process, a rate limit that does not bind (1000000/s)', 'ratefree', 1, $pf];
            $rows["wk.tasks.p$pf.w2.rate"] = ['tasks → Worker, 2 processes, rate limit ' . self::RATE . '/s: rate reached', 'rate', 2, $pf];
            $rows["wk.tasks.p$pf.w1.concurrency"] = ['tasks → Worker, 1 process, topic concurrency limit not binding', 'concurrency', 1, $pf];
            $rows["wk.tasks.p$pf.w2.concurrency1"] = ['tasks → Worker, 2 processes, topic concurrency 1 (binding: they take turns)', 'concurrency1', 2, $pf];
            $rows["wk.bare.p$pf.amqp"] = ['php-amqp consume + ack each', 'amqp', 1, $pf];
            $rows["wk.bare.p$pf.amqplib"] = ['php-amqplib basic_consume + ack each', 'amqplib', 1, $pf];
            $rows["wk.bare.p$pf.lapin"] = ['lapin (Rust) consume + pipelined acks', 'lapin', 1, $pf];
        }
        return $rows;
    }

    /** The tasks of each event in the fan-out rows (scheduler.php registers as many). */
    private const FANOUT = 10;

    /** The binding rate limit of the row "rate reached" (tasks per second), and its tasks. */
    private const RATE = 200;
    private const RATE_N = 2000;

    public function run(Context $ctx): void
    {
        $ctx->admin->channel()->queue_declare($ctx->qBare, false, true, false, false);
        $n = $ctx->settings['worker_n'];
        for ($rep = 1; $rep <= $ctx->settings['reps']; $rep++) {
            foreach (self::rows() as $key => [$label, $kind, $procs, $pf]) {
                if (!$ctx->wants($key)) {
                    continue;
                }
                $ctx->attempt("worker $label prefetch $pf", function () use ($ctx, $key, $label, $kind, $procs, $pf, $n, $rep) {
                    $rate = match ($kind) {
                        'e2e' => $this->endToEnd($ctx, $procs, $pf, $n),
                        'grouped' => $this->endToEnd($ctx, $procs, $pf, $n, 'grouped'),
                        'grouped.quiet' => $this->endToEnd($ctx, $procs, $pf, $n, 'grouped-failure'),
                        'fanout' => $this->endToEnd($ctx, $procs, $pf, $n, '', self::FANOUT),
                        'fanout.grouped' => $this->endToEnd($ctx, $procs, $pf, $n, 'grouped', self::FANOUT),
                        'fanout.grouped.quiet' => $this->endToEnd($ctx, $procs, $pf, $n, 'grouped-failure', self::FANOUT),
                        'worker' => $this->workerOnly($ctx, $procs, $pf, $n),
                        'metrics' => $this->workerOnly($ctx, $procs, $pf, $n, true),
                        'history' => $this->workerOnly($ctx, $procs, $pf, $n, true, true),
                        'ratefree' => $this->workerOnly($ctx, $procs, $pf, $n, limit: '1000000/s'),
                        // The first window lets RATE start at once: the rate reached is that of the others.
                        'rate' => $this->workerOnly($ctx, $procs, $pf, self::RATE_N, limit: self::RATE . '/s')
                            * (self::RATE_N - self::RATE) / self::RATE_N,
                        'concurrency' => $this->workerOnly($ctx, $procs, $pf, $n, env: ['EBATS_BENCH_CONCURRENCY' => '1000']),
                        'concurrency1' => $this->workerOnly($ctx, $procs, $pf, $n, env: ['EBATS_BENCH_CONCURRENCY' => '1']),
                        'hop' => $this->twoHop($ctx, $pf, $n),
                        default => $this->bare($ctx, $kind, $pf, $n),
                    };
                    $ctx->results->record($key, ['rate' => $rate]);
                    $ctx->note(sprintf('worker rep %d  prefetch %-3d %-45s %8.0f /s', $rep, $pf, $label, $rate));
                });
            }
        }
    }

    /**
     * Events waiting -> Scheduler -> Worker; timed from the scheduler's start to the N-th callback. With
     * $groups 'grouped' each event's task is a group (its open record on the groups stream, its end appended
     * before its ack, the follow-up published by the leader); with 'grouped-failure' the same, its follow-up
     * on failure only, so none is published. With $fanout > 1, N / $fanout events of $fanout tasks each (the
     * rate is of tasks, the same N of them).
     */
    private function endToEnd(Context $ctx, int $procs, int $prefetch, int $n, string $groups = '', int $fanout = 1): float
    {
        $grouped = $groups !== '';
        $ctx->admin->purge($ctx->qEvents);
        $ctx->admin->purge($ctx->qTasks);
        $events = intdiv($n, $fanout);
        $n = $events * $fanout;
        $ctx->runJson($ctx->phpCmd('fill.php', ['events', $events]));
        $ctx->admin->waitMessages($ctx->qEvents, $events);
        $dir = Workers::progressDir($ctx, 'e2e');
        $w = Workers::startWorker($ctx, $procs, $prefetch, $dir, '', Workers::expecting($procs, $n));
        $s = null;
        try {
            $ctx->admin->waitConsumers($ctx->qTasks, $procs);
            $t0 = microtime(true);
            $s = Workers::startScheduler($ctx, $groups, $fanout);
            return self::rate(Workers::waitProgress($dir, $n, 60 + $n / 100), $n, $t0);
        } finally {
            if ($s) {
                $ctx->stop($s);
            }
            $ctx->stop($w);
            if ($grouped) {
                // The row is timed to its tasks: the follow-ups of the groups still open when it stops would
                // be published by the next Scheduler to lead, in the middle of the next row (each a routed
                // event), with the stream's whole backlog folded first. The rows after start clean.
                $ctx->admin->channel()->queue_delete("{$ctx->prefix}.groups");
                $ctx->admin->purge($ctx->qEvents);
            }
        }
    }

    /**
     * Tasks waiting -> Worker; timed from the worker's start to the N-th callback. With $metrics, the worker
     * serves metrics and a scraper reads /metrics every 0.5 s meanwhile; with $history, the worker writes
     * the execution history (ebats.history) too; with $limit, the worker has that topic rate limit; $env goes
     * to the worker (a concurrency limit).
     */
    private function workerOnly(
        Context $ctx,
        int $procs,
        int $prefetch,
        int $n,
        bool $metrics = false,
        bool $history = false,
        string $limit = '',
        array $env = []
    ): float {
        $ctx->admin->purge($ctx->qTasks);
        $ctx->runJson($ctx->phpCmd('fill.php', ['tasks', $n]));
        $ctx->admin->waitMessages($ctx->qTasks, $n);
        $dir = Workers::progressDir($ctx, 'worker');
        $addr = '';
        $scraper = null;
        if ($metrics) {
            $addr = Context::freeAddress();
            $scraper = $ctx->spawn(['sh', '-c', "while :; do php -r 'echo @file_get_contents(\"http://$addr/metrics\");' > /dev/null; sleep 0.5; done"], "{$ctx->tmp}/scraper.log");
        }
        $t0 = microtime(true);
        $env += ($history ? ['EBATS_HISTORY' => '1'] : []) + ($limit !== '' ? ['EBATS_BENCH_RATE' => $limit] : []);
        $env += Workers::expecting($procs, $n);
        $w = Workers::startWorker($ctx, $procs, $prefetch, $dir, $addr, $env);
        try {
            return self::rate(Workers::waitProgress($dir, $n, 60 + $n / 100), $n, $t0);
        } finally {
            if ($scraper) {
                $ctx->stop($scraper);
            }
            $ctx->stop($w);
        }
    }

    /**
     * Raw messages waiting in A -> lapin consuming A, publishing each to B confirmed and acking it on the
     * confirm -> a lapin sink on B; timed from the relay's start to the N-th delivery at the sink.
     */
    private function twoHop(Context $ctx, int $prefetch, int $n): float
    {
        $to = "{$ctx->qBare}.hop";
        $ctx->admin->channel()->queue_declare($to, false, true, false, false);
        $ctx->admin->purge($ctx->qBare);
        $ctx->admin->purge($to);
        $ctx->runJson([$ctx->lapin, 'fill', $n, '--routing-key', $ctx->qBare]);
        $ctx->admin->waitMessages($ctx->qBare, $n);
        $t0 = sprintf('%.6f', microtime(true));
        $r = $ctx->runJson([$ctx->lapin, 'two-hop', $n, $prefetch, '--queue', $ctx->qBare, '--to', $to, '--t0', $t0]);
        return (float) $r['rate'];
    }

    /** Raw messages waiting -> a bare consume-and-ack loop; timed from its start to the N-th delivery. */
    private function bare(Context $ctx, string $client, int $prefetch, int $n): float
    {
        $ctx->admin->purge($ctx->qBare);
        $ctx->runJson([$ctx->lapin, 'fill', $n, '--routing-key', $ctx->qBare]);
        $ctx->admin->waitMessages($ctx->qBare, $n);
        $t0 = sprintf('%.6f', microtime(true));
        $r = $client === 'lapin'
            ? $ctx->runJson([$ctx->lapin, 'consume', $n, $prefetch, '--queue', $ctx->qBare, '--t0', $t0])
            : $ctx->runJson($ctx->phpCmd('consume.php', [$client, $ctx->qBare, $n, $prefetch, $t0], false));
        return (float) $r['rate'];
    }

    /** Tasks per second from $t0 to the last of them, from a progress reading [seen, failed, last]. */
    private static function rate(array $progress, int $n, float $t0): float
    {
        [, $failed, $last] = $progress;
        if ($failed) {
            throw new \RuntimeException("$failed tasks failed");
        }
        return $n / ($last - $t0);
    }

    public function report(Context $ctx, Report $report): void
    {
        $res = $ctx->results;
        if (!array_filter(array_keys(self::rows()), [$res, 'has'])) {
            return;
        }
        $report->line(sprintf('3. Worker throughput, no-op tasks, N=%s waiting in the broker, from process start to the N-th callback / ack (per s)', number_format($ctx->settings['worker_n'])));
        $pfLast = null;
        foreach (self::rows() as $key => [$label, , , $pf]) {
            if ($pf !== $pfLast) {
                $report->line($pf ? "   prefetch $pf" : '   default prefetch (setPrefetch() not called: adapted)');
                $pfLast = $pf;
            }
            $report->row($label, $res->cell($key, 'rate'));
        }
        $report->line();
    }

    public function targets(Context $ctx, Report $report): void
    {
        $res = $ctx->results;
        $fmt = [Results::class, 'fmt'];
        $ratio = [Results::class, 'ratio'];
        foreach ([1, 100] as $pf) {
            if (!$res->has("wk.tasks.p$pf.w1")) {
                continue;
            }
            $amqp = $res->med("wk.bare.p$pf.amqp", 'rate');
            $lapin = $res->med("wk.bare.p$pf.lapin", 'rate');
            $ceil = max(is_nan($amqp) ? 0 : $amqp, is_nan($lapin) ? 0 : $lapin);
            $ceilName = (!is_nan($lapin) && $lapin >= $amqp) ? 'lapin' : 'php-amqp';
            $w = $res->med("wk.tasks.p$pf.w1", 'rate');
            // Issue 22 asks php-amqp's rate at prefetch 1; prefetch 100 keeps the earlier 0.7 of the faster bare loop.
            $report->target("worker, prefetch $pf: tasks → Worker (1 proc) / $ceilName", $ratio($w, $ceil), $pf === 1 ? 1.0 : 0.70, '>=',
                sprintf('%s / %s = %.2f', $fmt($w), $fmt($ceil), $ratio($w, $ceil)));
            $m = $res->med("wk.tasks.p$pf.w1.metrics", 'rate');
            if (!is_nan($m)) {
                $report->target('  the same with metrics on and scraped / metrics off', $ratio($m, $w), 0.97, '>=',
                    sprintf('%s / %s = %.2f', $fmt($m), $fmt($w), $ratio($m, $w)));
            }
            $h = $res->med("wk.tasks.p$pf.w1.history", 'rate');
            if (!is_nan($h)) {
                $report->target('  the same with metrics and history on / both off', $ratio($h, $w), 0.97, '>=',
                    sprintf('%s / %s = %.3f', $fmt($h), $fmt($w), $ratio($h, $w)));
            }
            $free = $res->med("wk.tasks.p$pf.w1.ratefree", 'rate');
            if (!is_nan($free)) {
                $report->target('  the same with a rate limit that does not bind / none', $ratio($free, $w), 0.95, '>=',
                    sprintf('%s / %s = %.3f', $fmt($free), $fmt($w), $ratio($free, $w)));
            }
            $reached = $res->med("wk.tasks.p$pf.w2.rate", 'rate');
            if (!is_nan($reached)) {
                $report->target(sprintf('  rate reached / a limit of %d/s (2 procs)', self::RATE), $ratio($reached, self::RATE), 0.95, '>=',
                    sprintf('%s / %d = %.3f', $fmt($reached), self::RATE, $ratio($reached, self::RATE)));
            }
            $c = $res->med("wk.tasks.p$pf.w1.concurrency", 'rate');
            if (!is_nan($c)) {
                $report->target('  the same with a topic concurrency limit not binding / none', $ratio($c, $w), 0.95, '>=',
                    sprintf('%s / %s = %.3f', $fmt($c), $fmt($w), $ratio($c, $w)));
            }
            $c1 = $res->med("wk.tasks.p$pf.w2.concurrency1", 'rate');
            if (!is_nan($c1)) {
                $report->target('  2 procs taking turns at a topic concurrency of 1 / 1 proc without it', $ratio($c1, $w), 0.90, '>=',
                    sprintf('%s / %s = %.3f', $fmt($c1), $fmt($w), $ratio($c1, $w)));
            }
        }
        $g = $res->med('wk.grouped.p100.w1', 'rate');
        $e = $res->med('wk.e2e.p100.w1', 'rate');
        if (!is_nan($g) && !is_nan($e)) {
            $report->target('grouped / ungrouped: events → Scheduler → Worker (1 proc), prefetch 100', $ratio($g, $e), 0.90, '>=',
                sprintf('%s / %s = %.2f', $fmt($g), $fmt($e), $ratio($g, $e)));
        }
        $q = $res->med('wk.grouped.quiet.p100.w1', 'rate');
        if (!is_nan($q) && !is_nan($e)) {
            // Not a target: what tracking and completing the groups costs without their follow-up events.
            $report->line(sprintf('    grouped, no follow-up published / ungrouped: events → Scheduler → Worker (1 proc), prefetch 100: %s / %s = %.2f',
                $fmt($q), $fmt($e), $ratio($q, $e)));
        }
        $g = $res->med('wk.fanout.grouped.p100.w1', 'rate');
        $e10 = $res->med('wk.fanout.p100.w1', 'rate');
        if (!is_nan($g) && !is_nan($e10)) {
            $report->target(sprintf('grouped / ungrouped: events of %d tasks → Scheduler → Worker (1 proc), prefetch 100, tasks/s', self::FANOUT),
                $ratio($g, $e10), 0.90, '>=', sprintf('%s / %s = %.2f', $fmt($g), $fmt($e10), $ratio($g, $e10)));
        }
        $q = $res->med('wk.fanout.grouped.quiet.p100.w1', 'rate');
        if (!is_nan($q) && !is_nan($e10)) {
            $report->line(sprintf('    grouped, no follow-up published / ungrouped: events of %d tasks → Scheduler → Worker (1 proc), prefetch 100, tasks/s: %s / %s = %.2f',
                self::FANOUT, $fmt($q), $fmt($e10), $ratio($q, $e10)));
        }
        $hop = $res->med('wk.hop.p100.lapin', 'rate');
        if (!is_nan($hop) && !is_nan($e)) {
            $report->target('events → Scheduler → Worker (1 proc), prefetch 100 / lapin two-hop', $ratio($e, $hop), 1.0, '>=',
                sprintf('%s / %s = %.2f', $fmt($e), $fmt($hop), $ratio($e, $hop)));
        }
        foreach (['tasks.p%s.w1' => 'tasks → Worker, 1 proc', 'tasks.p%s.w2' => 'tasks → Worker, 2 procs',
                  'e2e.p%s.w1' => 'events → Scheduler → Worker, 1 proc', 'e2e.p%s.w2' => 'events → Scheduler → Worker, 2 procs'] as $k => $label) {
            $d = $res->med('wk.' . sprintf($k, 'def'), 'rate');
            $h = $res->med('wk.' . sprintf($k, '100'), 'rate');
            if (!is_nan($d) && !is_nan($h)) {
                $report->target("default prefetch / prefetch 100: $label", $ratio($d, $h), 0.85, '>=',
                    sprintf('%s / %s = %.2f', $fmt($d), $fmt($h), $ratio($d, $h)));
            }
        }
    }
}
