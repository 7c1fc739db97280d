<?php

declare(strict_types=1);

namespace Ebats\Bench;

/**
 * The measurements of a run: for each key (e.g. "pub.each.ebats_event"), one array of metrics per repetition;
 * and the statistics and number formats the table uses.
 */
final class Results
{
    /** @var array<string,list<array<string,mixed>>> */
    private array $byKey = [];

    public function record(string $key, array $metrics): void
    {
        $this->byKey[$key][] = $metrics;
    }

    public function has(string $key): bool
    {
        return isset($this->byKey[$key]);
    }

    /** @return list<array<string,mixed>> the metrics of each repetition */
    public function runs(string $key): array
    {
        return $this->byKey[$key] ?? [];
    }

    /** One metric over the repetitions. */
    public function values(string $key, string $metric): array
    {
        return array_map(static fn (array $r) => $r[$metric], $this->runs($key));
    }

    public function med(string $key, string $metric): float
    {
        return self::median($this->values($key, $metric));
    }

    /** "median (min–max)" of a metric, or "median" alone for one repetition. */
    public function cell(string $key, string $metric, int $dec = 0): string
    {
        $v = $this->values($key, $metric);
        if (!$v) {
            return 'not run';
        }
        $s = self::fmt(self::median($v), $dec);
        if (count($v) > 1) {
            $s .= ' (' . self::fmt(min($v), $dec) . '–' . self::fmt(max($v), $dec) . ')';
        }
        return $s;
    }

    public function all(): array
    {
        return $this->byKey;
    }

    public static function median(array $v): float
    {
        sort($v);
        $n = count($v);
        if ($n === 0) {
            return NAN;
        }
        return $n % 2 ? (float) $v[intdiv($n, 2)] : ($v[$n / 2 - 1] + $v[$n / 2]) / 2.0;
    }

    /** The $p-th percentile of sorted values. */
    public static function pct(array $sorted, float $p): float
    {
        if (!$sorted) {
            return NAN;
        }
        $i = (int) round($p / 100 * (count($sorted) - 1));
        return (float) $sorted[min($i, count($sorted) - 1)];
    }

    public static function fmt(float $v, int $dec = 0): string
    {
        return is_nan($v) ? '—' : number_format($v, $dec, '.', ',');
    }

    /** $a / $b, NAN when either is unknown or $b is not positive. */
    public static function ratio(float $a, float $b): float
    {
        return ($b > 0 && !is_nan($a) && !is_nan($b)) ? $a / $b : NAN;
    }
}
