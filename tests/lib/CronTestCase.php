<?php

declare(strict_types=1);

namespace Ebats\Tests\Lib;

use Asynclib\Ebats\Schedules;

/**
 * Base of the periodic-schedule tests: firings are counted on a probe queue bound to the event exchange
 * (each firing is an event whose header x-ebats-cron holds its record: schedule, tick, late; a trigger's
 * header x-ebats-cron-trigger holds its id). The schedule stream and the leader queue are removed after.
 */
abstract class CronTestCase extends ProcTestCase
{
    protected string $probe;

    /** @var list<array{schedule:string,tick:?int,late:bool,trigger:?string,event:string,params:mixed,id:string}> */
    protected array $fired = [];

    protected function setUp(): void
    {
        parent::setUp();
        $this->probe = static::prefix() . '_probe_' . bin2hex(random_bytes(2));
        $this->broker->declareQueue($this->probe);
        $this->broker->declareExchange(static::q('core.event'), 'fanout');
        $this->broker->bindQueue($this->probe, static::q('core.event'));
    }

    protected function tearDown(): void
    {
        $this->stopAll();
        $this->broker->deleteQueue($this->probe);
        foreach ([static::q('cron'), static::q('cron.leader')] as $q) {
            $this->broker->deleteQueue($q);
        }
        parent::tearDown();
    }

    /** Whether the Scheduler process $p has taken over the leadership of the periodic schedules. */
    protected static function leads(Process $p): bool
    {
        return str_contains($p->stderr(), 'cron: took over the leadership');
    }

    /** The schedules as Schedules::list() gives them, by name. */
    protected static function list(): array
    {
        $out = [];
        foreach (Schedules::list() as $s) {
            $out[$s['name']] = $s;
        }
        return $out;
    }

    /** Takes every message of the probe queue into $this->fired; returns them all. */
    protected function firings(): array
    {
        while (($m = $this->broker->get($this->probe)) !== null) {
            [$body, $props] = $m;
            $headers = $props['headers'] ?? [];
            $event = json_decode($body, true);
            if (isset($headers['x-ebats-cron'])) {
                $r = json_decode($headers['x-ebats-cron'], true);
                $this->fired[] = ['schedule' => $r['schedule'], 'tick' => $r['tick'], 'late' => $r['late'], 'trigger' => null, 'event' => $event['event'], 'params' => $event['params'], 'id' => $event['id']];
            } elseif (isset($headers['x-ebats-cron-trigger'])) {
                $r = json_decode($headers['x-ebats-cron-trigger'], true);
                $this->fired[] = ['schedule' => $r['schedule'], 'tick' => null, 'late' => false, 'trigger' => $r['id'], 'event' => $event['event'], 'params' => $event['params'], 'id' => $event['id']];
            }
        }
        return $this->fired;
    }

    /** @return list<array> the firings of one schedule */
    protected function firingsOf(string $schedule): array
    {
        return array_values(array_filter($this->firings(), static fn (array $f): bool => $f['schedule'] === $schedule));
    }
}
