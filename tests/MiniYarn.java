// Hadoop's MiniYARNCluster for the tests (tests/yarn.py): a ResourceManager and one NodeManager in this JVM,
// with the settings a small YARN on one machine needs; once it serves, its whole configuration is written to
// args[0] (yarn-site.xml for spark-submit's HADOOP_CONF_DIR). Run as a single-file program: java MiniYarn.java.
import java.io.File;
import java.io.FileOutputStream;
import org.apache.hadoop.yarn.conf.YarnConfiguration;
import org.apache.hadoop.yarn.server.MiniYARNCluster;

public class MiniYarn {
  public static void main(String[] args) throws Exception {
    YarnConfiguration conf = new YarnConfiguration();
    conf.set("yarn.resourcemanager.hostname", "127.0.0.1");
    // the containers' JVMs reserve more virtual memory than YARN's default ratio allows
    conf.setBoolean("yarn.nodemanager.vmem-check-enabled", false);
    conf.setInt("yarn.scheduler.minimum-allocation-mb", 128);
    // the attempts an application may ask for (spark.yarn.maxAppAttempts); YARN's own default allows 2
    conf.setInt("yarn.resourcemanager.am.max-attempts", 4);
    // MiniYARNCluster gives its NodeManagers the memory of this key (4 GiB unless set), not of YARN's own
    conf.setInt("yarn.minicluster.yarn.nodemanager.resource.memory-mb", Integer.parseInt(args[1]));
    conf.setInt("yarn.nodemanager.resource.cpu-vcores", 4);
    // a busy test machine's disk must not take the node out of service
    conf.setFloat("yarn.nodemanager.disk-health-checker.max-disk-utilization-per-disk-percentage", 99.9f);
    conf.set("yarn.scheduler.capacity.root.queues", "default");
    conf.set("yarn.scheduler.capacity.root.default.capacity", "100");
    conf.set("yarn.scheduler.capacity.root.default.maximum-capacity", "100");
    MiniYARNCluster cluster = new MiniYARNCluster("fraud", 1, 1, 1);
    cluster.init(conf);
    cluster.start();
    File written = new File(args[0]), partial = new File(args[0] + ".partial");
    try (FileOutputStream out = new FileOutputStream(partial)) {
      cluster.getConfig().writeXml(out);
    }
    if (!partial.renameTo(written)) throw new IllegalStateException("could not write " + written);
    Thread.currentThread().join();
  }
}
