<?php

declare(strict_types=1);

namespace Ebats\Tests\Php;

use Ebats\Tests\Lib\Process;
use PHPUnit\Framework\TestCase;

/**
 * deploy/kubernetes/ validated against Kubernetes' schemas by kubernetes-validate (scripts/containers
 * k8s-validate, which installs it from PyPI into a venv): the manifests pass, strictly, a broken copy does not;
 * and they keep the promises of the README: probes on /healthz, grace periods, replicas as in the compose file.
 * In group containers (its own step of scripts/test) because the first run installs a package.
 *
 * @group containers
 */
final class KubernetesTest extends TestCase
{
    private const SCRIPT = __DIR__ . '/../../scripts/containers';
    private const MANIFEST = __DIR__ . '/../../deploy/kubernetes/ebats.yaml';

    public function testTheManifestsValidate(): void
    {
        $p = Process::run(['bash', self::SCRIPT, 'k8s-validate'], [], 300.0);
        $this->assertSame(0, $p->exitCode(), $p->describe());
        foreach (['statefulset/queue', 'deployment/scheduler', 'deployment/executor', 'deployment/monitor', 'deployment/prometheus'] as $r) {
            $this->assertStringContainsString("passed for resource $r against version 1.30", $p->stdout() . $p->stderr());
        }
    }

    public function testABrokenManifestIsRefused(): void
    {
        $bad = Process::scriptFile(str_replace(
            'terminationGracePeriodSeconds: 60',
            'terminationGracePeriod: 60',
            (string) file_get_contents(self::MANIFEST)
        ));
        $venv = __DIR__ . '/../../target/kubernetes-validate/bin/kubernetes-validate';
        if (!is_executable($venv)) {
            $this->assertSame(0, Process::run(['bash', self::SCRIPT, 'k8s-validate'], [], 300.0)->exitCode());
        }
        $p = Process::run([$venv, '--strict', '-k', '1.30.0', $bad], [], 120.0);
        $this->assertNotSame(0, $p->exitCode(), $p->describe());
        $this->assertStringContainsString("'terminationGracePeriod' was unexpected", $p->stdout() . $p->stderr());
    }

    public function testProbesGracePeriodsAndReplicas(): void
    {
        $docs = preg_split('/^---$/m', (string) file_get_contents(self::MANIFEST));
        $byName = [];
        foreach ($docs as $doc) {
            if (preg_match('/^kind: (Deployment|StatefulSet)$/m', $doc) && preg_match('/^  name: (\S+)$/m', $doc, $m)) {
                $byName[$m[1]] = $doc;
            }
        }
        $this->assertSame(['queue', 'scheduler', 'executor', 'monitor', 'prometheus'], array_keys($byName));
        $this->assertMatchesRegularExpression('/^  replicas: 5$/m', $byName['executor']);
        $this->assertMatchesRegularExpression('/^  replicas: 2$/m', $byName['scheduler']);
        foreach (['scheduler', 'executor'] as $name) {
            $this->assertSame(2, substr_count($byName[$name], 'httpGet: {path: /healthz, port: metrics}'), "$name: liveness and readiness on /healthz");
        }
        // The same bound as the compose file's stop_grace_period for a worker.
        $this->assertMatchesRegularExpression('/terminationGracePeriodSeconds: 60\n/', $byName['executor']);
    }
}
