/*
 * Newsflow local stack: `GET /` and `HEAD /` for the Elasticsearch integ-test-zip.
 *
 * The integ-test-zip published on Maven Central ships without the `rest-root`
 * module, so the node answers `GET /` with 405 and `HEAD /` (client ping) fails.
 * Clients (elasticsearch-py `info()`/`ping()`, Kibana, health checks) need that
 * endpoint, so deploy/local/stack.sh compiles this file against the unpacked
 * distribution's own jars and installs it as the module `newsflow-rest-root`.
 * The response has the same shape as the stock endpoint (name, cluster_name,
 * cluster_uuid, version{number, build_flavor, build_type, build_hash, ...}, tagline).
 *
 * Written against the Elasticsearch 9.5 plugin API; if a future ES_VERSION changes
 * that API, stack.sh reports the compile error and starts ES without this module.
 */
package dev.newsflow.esroot;

import org.elasticsearch.Build;
import org.elasticsearch.client.internal.node.NodeClient;
import org.elasticsearch.cluster.ClusterState;
import org.elasticsearch.cluster.node.DiscoveryNodes;
import org.elasticsearch.cluster.service.ClusterService;
import org.elasticsearch.features.NodeFeature;
import org.elasticsearch.index.IndexVersion;
import org.elasticsearch.plugins.ActionPlugin;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.rest.BaseRestHandler;
import org.elasticsearch.rest.RestHandler;
import org.elasticsearch.rest.RestRequest;
import org.elasticsearch.rest.RestResponse;
import org.elasticsearch.rest.RestStatus;
import org.elasticsearch.xcontent.XContentBuilder;

import java.util.Collection;
import java.util.List;
import java.util.function.Predicate;
import java.util.function.Supplier;

public class NewsflowRootPlugin extends Plugin implements ActionPlugin {

    private volatile ClusterService clusterService;

    @Override
    public Collection<?> createComponents(PluginServices services) {
        this.clusterService = services.clusterService();
        return List.of();
    }

    @Override
    public Collection<RestHandler> getRestHandlers(
        RestHandlersServices restHandlersServices,
        Supplier<DiscoveryNodes> nodesInCluster,
        Predicate<NodeFeature> clusterSupportsFeature
    ) {
        return List.of(new RootHandler());
    }

    private final class RootHandler extends BaseRestHandler {

        @Override
        public String getName() {
            return "newsflow_main_action";
        }

        @Override
        public List<Route> routes() {
            return List.of(new Route(RestRequest.Method.GET, "/"), new Route(RestRequest.Method.HEAD, "/"));
        }

        @Override
        public boolean canTripCircuitBreaker() {
            return false;
        }

        @Override
        protected RestChannelConsumer prepareRequest(RestRequest request, NodeClient client) {
            return channel -> {
                ClusterService cs = clusterService;
                ClusterState state = cs == null ? null : cs.state();
                Build build = Build.current();
                XContentBuilder builder = channel.newBuilder();
                if (request.hasParam("pretty") == false) {
                    builder.prettyPrint().lfAtEnd();
                }
                builder.startObject();
                builder.field("name", cs == null ? "" : cs.getNodeName());
                builder.field("cluster_name", cs == null ? "" : cs.getClusterName().value());
                builder.field("cluster_uuid", state == null ? "_na_" : state.metadata().clusterUUID());
                builder.startObject("version")
                    .field("number", build.qualifiedVersion())
                    .field("build_flavor", "default")
                    .field("build_type", build.type().displayName())
                    .field("build_hash", build.hash())
                    .field("build_date", build.date())
                    .field("build_snapshot", build.isSnapshot())
                    .field("lucene_version", IndexVersion.current().luceneVersion().toString())
                    .field("minimum_wire_compatibility_version", build.minWireCompatVersion())
                    .field("minimum_index_compatibility_version", build.minIndexCompatVersion())
                    .endObject();
                builder.field("tagline", "You Know, for Search");
                builder.endObject();
                channel.sendResponse(new RestResponse(RestStatus.OK, builder));
            };
        }
    }
}
