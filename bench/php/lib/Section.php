<?php

declare(strict_types=1);

namespace Ebats\Bench;

/** One part of the bench (bench/php/sections/): what it measures, its rows of the table, its targets. */
interface Section
{
    /** The name given to --only. */
    public function name(): string;

    /** Measures, $ctx->settings['reps'] times, recording into $ctx->results. */
    public function run(Context $ctx): void;

    /** Its part of the table; nothing when it recorded nothing. */
    public function report(Context $ctx, Report $report): void;

    /** Its targets; nothing when it recorded nothing. */
    public function targets(Context $ctx, Report $report): void;
}
