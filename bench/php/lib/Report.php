<?php

declare(strict_types=1);

namespace Ebats\Bench;

/** The printed table: each section's rows, then the targets met or missed, then the failures. */
final class Report
{
    /** @var list<string> */
    private array $lines = [];
    /** @var list<array{0:string,1:string,2:string,3:string}> what, detail, goal, verdict */
    private array $targets = [];

    public function line(string $s = ''): void
    {
        $this->lines[] = $s;
    }

    /** A row: a label and columns, padded to the table's widths. */
    public function row(string $label, string ...$cols): void
    {
        $s = '    ' . self::pad($label, 52);
        foreach ($cols as $i => $c) {
            $s .= self::pad($c, $i === 0 ? 24 : 20);
        }
        $this->lines[] = rtrim($s);
    }

    /** A target: $measured compared with $goal ('>=' or '<='); "not run" when nothing was measured. */
    public function target(string $what, float $measured, float $goal, string $kind, string $detail): void
    {
        if (is_nan($measured)) {
            $this->targets[] = [$what, 'not run', '', '—'];
            return;
        }
        $ok = $kind === '>=' ? $measured >= $goal : $measured <= $goal;
        $this->targets[] = [$what, $detail, sprintf('%s %s', $kind === '>=' ? '≥' : '≤', rtrim(rtrim(number_format($goal, 2, '.', ''), '0'), '.')), $ok ? 'MET' : 'MISSED'];
    }

    /** The whole table, the targets and the failures. */
    public function render(array $failures): string
    {
        $out = $this->lines;
        if ($this->targets) {
            $out[] = 'Targets (from medians)';
            foreach ($this->targets as [$what, $detail, $goal, $verdict]) {
                $out[] = rtrim('    ' . self::pad($what, 58) . self::pad($detail, 36) . self::pad($goal, 8) . $verdict);
            }
            $out[] = '';
        }
        if ($failures) {
            $out[] = 'Failures during the run:';
            foreach ($failures as $f) {
                $out[] = "  - $f";
            }
        }
        return implode("\n", $out) . "\n";
    }

    /** Pads to a width in characters (labels hold multi-byte arrows and dashes). */
    private static function pad(string $s, int $w): string
    {
        return $s . str_repeat(' ', max(1, $w - mb_strlen($s)));
    }
}
